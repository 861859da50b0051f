"""``fedarena data``: the datasets on this machine.

``fedarena data list`` shows every dataset plugin: whether its data is
cached (and where, and its size), still to fetch, read from a ``path``
only, or needs nothing.  ``fedarena data fetch NAME ...`` downloads a
dataset with its standard loader's own download function into that
loader's cache (``~/.keras/datasets``, ``~/.tff``, or under
``$FEDARENA_DATA``), checks it against its published SHA-256 (or, where
none is published, its contents against the published counts), and says
where it went.  Neither imports TensorFlow except to download.
"""

from __future__ import annotations

import os

from fedarena.core.errors import UsageError


def _source(entry):
    """A dataset plugin's download (`fedarena.plugins.datasets._download.Source`), or None."""
    from fedarena.plugins.datasets._download import Source

    source = getattr(entry.cls, "SOURCE", None)
    return source if isinstance(source, Source) else None


def _rows(registry) -> list[tuple[str, str, str, str]]:
    from fedarena.plugins.datasets._download import shown, size_text

    rows = []
    for entry in registry.entries("dataset"):
        source = _source(entry)
        if source is not None and source.cached():
            rows.append((entry.name, "cached", size_text(source.disk_size()), shown(source.location())))
        elif source is not None:
            rows.append((entry.name, "not fetched", source.size,
                         f"{shown(source.location())} (fedarena data fetch {entry.name})"))
        elif any(p.name == "path" and p.required for p in entry.params()):
            rows.append((entry.name, "path only", "-", "its files, given as path = ... in the scenario"))
        else:
            rows.append((entry.name, "offline", "-", "nothing to download"))
    return rows


def cmd_data_list(args) -> int:
    from fedarena.core.plugin.registry import default_registry
    from fedarena.plugins.datasets._download import DATA_ENV, cache_root, shown

    rows = [("DATASET", "STATUS", "SIZE", "WHERE")] + _rows(default_registry())
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])
    print(f"\ncaches: {shown(cache_root('keras') / 'datasets')} (Keras), {shown(cache_root('tff'))} (TFF); "
          f"set {DATA_ENV}=DIR to keep them in DIR/keras and DIR/tff")
    return 0


def cmd_data_fetch(args) -> int:
    from fedarena.core.plugin.registry import default_registry
    from fedarena.core.scenario.check import did_you_mean
    from fedarena.plugins.datasets._download import shown

    registry = default_registry()
    sources = []
    for name in args.names:
        entry = registry.get("dataset", name)
        if entry is None:
            known = registry.names("dataset")
            raise UsageError(f"unknown dataset '{name}'{did_you_mean(name, known) or '; known: ' + ', '.join(known)}")
        source = _source(entry)
        if source is None:
            downloadable = [e.name for e in registry.entries("dataset") if _source(e) is not None]
            raise UsageError(f"dataset '{name}' has nothing to download (its data is given by path = ... or needs "
                             f"none); the datasets to fetch are {', '.join(downloadable)}")
        sources.append(source)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter, if a download needs it
    for source in sources:
        source.fetch(say=lambda line: print(line, flush=True))
        print(f"{source.dataset}: ready in {shown(source.location())}")
    return 0


def add_data_commands(commands) -> None:
    """Register ``fedarena data list`` and ``fedarena data fetch`` with the main parser's subcommands."""
    data = commands.add_parser(
        "data", help="list the datasets on this machine, or download one",
        description="The datasets on this machine: 'list' shows each dataset, whether it is cached, where and its "
        "size; 'fetch NAME' downloads one with its standard loader (Keras or TFF), checks it, and says where it "
        "went. Run 'fetch' where there is network before running offline.",
    )
    actions = data.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser("list", help="every dataset: cached or not, where, and its size")
    listing.set_defaults(handler=cmd_data_list)
    fetch = actions.add_parser(
        "fetch", help="download datasets to their standard cache and check them",
        description="Download each named dataset with its standard loader's download function into that loader's "
        "cache (~/.keras/datasets, ~/.tff; under $FEDARENA_DATA when set), check its published SHA-256 (or, where "
        "none is published, its contents), and print where it went. Exit 1 if a download fails.",
    )
    fetch.add_argument("names", nargs="+", metavar="NAME", help="a dataset, e.g. mnist, cifar10, shakespeare")
    fetch.set_defaults(handler=cmd_data_fetch)
