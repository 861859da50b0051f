"""The plugin reference (``docs/plugin-reference.md``), generated from the
plugins' own declarations: each built-in plugin's docstring and, for every
parameter, the type, default, range and one-line doc given to `param`.

The committed file must equal `render()`'s output (a test checks it), so the
reference cannot drift from the code.  After changing a plugin, rewrite it:

    python -m fedarena.core.plugin.docs            # writes docs/plugin-reference.md
    python -m fedarena.core.plugin.docs --check    # exit 1 if it is out of date

Only fedarena's own plugins are listed (third-party plugins installed beside
it are not), and no version number appears, so the output depends on the
source alone.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from fedarena.core.plugin.interfaces import Plugin

# Headings and one-line introductions of each kind, in the order a scenario
# names them.
KIND_TITLES = {
    "dataset": ("Datasets", "`dataset NAME(...)`: the data, split into training data for the clients and a "
                "held-out test set for the server."),
    "split": ("Splits", "`split NAME(...) over N clients`: how the training data is divided among the clients."),
    "model": ("Models", "`model NAME(...)`: the Keras model every client trains."),
    "optimizer": ("Optimizers", "`optimizer NAME(...)` inside `training { ... }`: the clients' local optimizer."),
    "attack": ("Attacks", "`attack NAME(...) { clients N }`: what a group of malicious clients does, to its "
               "training data (data poisoning) or to its updates at the server stage (model poisoning)."),
    "trigger": ("Triggers", "`trigger = NAME(...)` as a parameter of a backdoor attack "
                "(`backdoor(target = 0, trigger = pixel(size = 3))`): the pattern stamped on poisoned inputs."),
    "detector": ("Detectors", "`detector NAME(...)`: scores each round's updates and drops the ones it judges "
                 "malicious, before aggregation; detectors run in the order written."),
    "aggregator": ("Aggregators", "`aggregator NAME(...)`: how the server combines the kept updates."),
    "metric": ("Metrics", "Test-set metrics, computed at every evaluation (not named in scenarios)."),
}

DOC_PATH = Path("docs") / "plugin-reference.md"
COMMAND = "python -m fedarena.core.plugin.docs"


def _builtin_entries(registry):
    """The registry's plugins that fedarena itself ships, by kind."""
    entries = [e for e in registry.entries() if e.cls.__module__.startswith("fedarena.plugins.")]
    by_kind: dict[str, list] = {kind: [] for kind in KIND_TITLES}
    for entry in entries:
        by_kind.setdefault(entry.kind, []).append(entry)
    return by_kind


def _cell(text: str) -> str:
    """Text for a Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: str) -> str:
    """Inline code, with a fence long enough for backticks inside."""
    text = _cell(text)
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _default(info, registry) -> str:
    if info.required:
        return "required"
    value = info.default
    if isinstance(value, Plugin):  # a nested plugin, as a scenario writes it
        return _code(registry.label(value))
    if isinstance(value, tuple):  # lists are declared as tuples
        value = list(value)
    if isinstance(value, bool):
        return _code("true" if value else "false")
    if isinstance(value, str):
        return _code(f'"{value}"')
    if value is None:
        return "none"
    return _code(repr(value))


def _usage(entry) -> str:
    """How a scenario names the plugin, with its required parameters."""
    required = [p.name for p in entry.params() if p.required]
    if not required:
        return entry.name
    return f"{entry.name}(" + ", ".join(f"{name} = ..." for name in required) + ")"


def _plugin_section(entry, registry) -> list[str]:
    lines = [f"### `{entry.name}`", ""]
    doc = inspect.cleandoc(entry.cls.__doc__ or "").strip()
    if doc:
        lines += [doc, ""]
    params = entry.params()
    if not params:
        lines += ["No parameters.", ""]
        return lines
    lines += [
        f"Usage: `{_usage(entry)}`",
        "",
        "| parameter | type | default | allowed | description |",
        "|---|---|---|---|---|",
    ]
    for info in params:
        allowed = info.range_text()
        lines.append(
            f"| `{info.name}` | {_cell(info.type_name())} | {_default(info, registry)} | "
            f"{_cell(allowed) if allowed else ''} | {_cell(info.doc)} |"
        )
    lines.append("")
    return lines


def render(registry=None) -> str:
    """The whole reference as Markdown."""
    if registry is None:
        from fedarena.core.plugin.registry import build_registry

        registry = build_registry()
    by_kind = _builtin_entries(registry)
    lines = [
        "# Plugin reference",
        "",
        f"<!-- Generated by `{COMMAND}` from the plugins' parameter declarations; do not edit by hand. -->",
        "",
        "Every plugin fedarena ships, by kind, with its parameters as the checker "
        "reads them: type, default, allowed values and what each does. "
        "`fedarena plugins` lists the same, plus any third-party plugins installed. "
        "Parameters are given by name (`krum(f = 2)`); a plugin without required "
        "parameters may be named alone (`median`). Lists are written `[1, 2]`, "
        "booleans `true` / `false`, strings in double quotes.",
        "",
    ]
    kinds = [kind for kind in KIND_TITLES if by_kind.get(kind)] + sorted(
        kind for kind in by_kind if kind not in KIND_TITLES and by_kind[kind]
    )
    lines += ["| kind | plugins |", "|---|---|"]
    for kind in kinds:
        title = KIND_TITLES.get(kind, (kind.capitalize() + "s", ""))[0]
        anchor = title.lower()
        names = ", ".join(f"`{e.name}`" for e in by_kind[kind])
        lines.append(f"| [{title}](#{anchor}) | {names} |")
    lines.append("")
    for kind in kinds:
        title, intro = KIND_TITLES.get(kind, (kind.capitalize() + "s", ""))
        lines += [f"## {title}", ""]
        if intro:
            lines += [intro, ""]
        for entry in by_kind[kind]:
            lines += _plugin_section(entry, registry)
    return "\n".join(lines).rstrip("\n") + "\n"


def repository_root() -> Path:
    """The source checkout holding ``docs/`` (this file lives in ``core/plugin/``)."""
    return Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=COMMAND, description="Write docs/plugin-reference.md from the built-in plugins' declarations."
    )
    parser.add_argument("output", nargs="?", help=f"file to write (default: {DOC_PATH} in the checkout)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the file is out of date")
    args = parser.parse_args(argv)
    path = Path(args.output) if args.output else repository_root() / DOC_PATH
    text = render()
    current = path.read_text(encoding="utf-8") if path.is_file() else None
    if args.check:
        if current != text:
            print(f"{path} is out of date; run {COMMAND}", file=sys.stderr)
            return 1
        return 0
    if current != text:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
