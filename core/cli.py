"""The ``fedarena`` command.

Exit codes: 0 success; 1 a failure while running; 2 a bad scenario or bad
usage (a message, never a traceback); 130 interrupted by Ctrl-C; 143 ended
by SIGTERM.  TensorFlow is imported only by commands that run something.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from fedarena.core import interrupts
from fedarena.core.errors import FedarenaError, ScenarioError, UsageError


def read_scenario(path: str):
    from fedarena.core.language import parse

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{path}: no such scenario file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(f"{path}: not a UTF-8 text file ({error.reason} at byte {error.start})") from None
    return parse(text, str(path))


def checked_scenario(path: str, output: str | None = None):
    from fedarena.core.check import check
    from fedarena.core.registry import default_registry

    registry = default_registry()
    for problem in registry.load_errors:
        print(f"warning: {problem}", file=sys.stderr)
    return check(read_scenario(path), registry, output), registry


def cmd_run(args) -> int:
    scenario, registry = checked_scenario(args.file, args.output)
    # Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from fedarena.core.runner import Progress, run_scenario

    progress = Progress(scenario.rounds, enabled={"auto": None, "bar": True, "none": False}[args.progress])
    workers = [w.strip() for w in args.workers.split(",") if w.strip()] if args.workers else None
    if args.resume and args.force:
        raise UsageError("--resume continues an existing results file; --force would overwrite it: choose one")
    final = run_scenario(scenario, registry, force=args.force, workers=workers, progress=progress,
                         resume=args.resume)
    summary = "  ".join(f"{name} {value:.4f}" for name, value in final.items())
    print(f"{scenario.title}: {scenario.rounds} rounds complete; {summary}")
    print(f"results written to {scenario.output}")
    return 0


def cmd_check(args) -> int:
    failed = 0
    for path in args.files:
        try:
            scenario, _ = checked_scenario(path)
        except (ScenarioError, UsageError) as error:
            print(error, file=sys.stderr)
            failed += 1
            continue
        attackers = sum(g.num_clients for g in scenario.attacks)
        print(f"{path}: ok ({scenario.rounds} rounds, {scenario.num_clients} clients, {attackers} attackers)")
    return 2 if failed else 0


def cmd_plugins(args) -> int:
    from fedarena.core.interfaces import KINDS
    from fedarena.core.registry import default_registry

    registry = default_registry()
    if args.kind and args.kind not in KINDS:
        raise UsageError(f"unknown plugin kind '{args.kind}'; kinds: {', '.join(KINDS)}")
    entries = registry.entries(args.kind)
    if args.json:
        print(json.dumps([
            {
                "kind": e.kind, "name": e.name, "doc": e.doc,
                "distribution": e.provider.distribution, "version": e.provider.version,
                "parameters": [p.as_dict() for p in e.params()],
            }
            for e in entries
        ], indent=2, default=repr))
    else:
        for e in entries:
            print(f"{e.kind:<11}{e.name:<16}{e.provider.distribution} {e.provider.version}  {e.doc}")
            for p in e.params():
                default = "required" if p.required else f"default {p.default!r}"
                bounds = f", {p.range_text()}" if p.range_text() else ""
                print(f"{'':27}{p.name}: {p.type_name()} ({default}{bounds})  {p.doc}")
    for problem in registry.load_errors:
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    from fedarena.core.report import report

    written = report(args.files, args.out, with_csv=args.csv)
    for path in written:
        print(path)
    return 0


def cmd_show(args) -> int:
    from fedarena.core.report import show

    for path in args.files:
        print(show(path))
    return 0


def cmd_worker(args) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from fedarena.core.workers import serve

    return serve(args.host, args.port)


def build_parser() -> argparse.ArgumentParser:
    from fedarena import __version__

    parser = argparse.ArgumentParser(
        prog="fedarena",
        description="Run federated-learning poisoning scenarios (.fls files) on TensorFlow Federated "
        "and record what happened in HDF5.",
    )
    parser.add_argument("--version", action="version", version=f"fedarena {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    run = commands.add_parser(
        "run", help="run a scenario and write its results file",
        description="Run every round of a scenario on TFF and write the results to HDF5 "
        "(the scenario's 'output', or -o). An existing results file is never overwritten without --force.",
    )
    run.add_argument("file", metavar="FILE.fls", help="the scenario to run")
    run.add_argument("-o", "--output", help="results file (default: the scenario's 'output' statement)")
    run.add_argument("--force", action="store_true", help="overwrite an existing results file")
    run.add_argument("--resume", action="store_true",
                     help="continue an interrupted or crashed run from the last round its results file holds")
    run.add_argument("--workers", metavar="HOST:PORT,...",
                     help="TFF executor services to use (default: start a local one and stop it at the end)")
    run.add_argument("--progress", choices=("auto", "bar", "none"), default="auto",
                     help="progress display: a bar on a terminal (auto), always, or never")
    run.set_defaults(handler=cmd_run)

    check = commands.add_parser(
        "check", help="check scenarios without running them",
        description="Parse and check scenarios: syntax, plugin names, parameters and cross-field rules.",
    )
    check.add_argument("files", nargs="+", metavar="FILE.fls")
    check.set_defaults(handler=cmd_check)

    plugins = commands.add_parser("plugins", help="list the plugins that are installed",
                                  description="List plugins with their parameters and the distribution providing each.")
    plugins.add_argument("kind", nargs="?", help="only this kind (dataset, split, model, optimizer, attack, ...)")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(handler=cmd_plugins)

    report = commands.add_parser(
        "report", help="plots and tables from results files",
        description="Write PNG plots (test accuracy and attack success per round, per-client scores; for "
        "sweeps, heatmaps by aggregator x attack) and a Markdown summary table.",
    )
    report.add_argument("files", nargs="+", metavar="FILE.h5")
    report.add_argument("--out", default="report", help="folder for the plots and tables (default: report)")
    report.add_argument("--csv", action="store_true", help="also export each run's metrics as CSV")
    report.set_defaults(handler=cmd_report)

    show = commands.add_parser("show", help="summarise results files in the terminal",
                               description="Status, rounds done, final metrics and what the detectors caught.")
    show.add_argument("files", nargs="+", metavar="FILE.h5")
    show.set_defaults(handler=cmd_show)

    worker = commands.add_parser(
        "worker", help="serve TFF computations for runs on other machines",
        description="Run a TFF executor service (TFF's C++ worker) until Ctrl-C or SIGTERM, for "
        "`fedarena run --workers HOST:PORT,...` on other machines. It has no authentication.",
    )
    worker.add_argument("--host", default="127.0.0.1",
                        help="address the runs will use to reach this worker (default: 127.0.0.1)")
    worker.add_argument("--port", type=int, default=0, help="port to serve on (default: a free one)")
    worker.set_defaults(handler=cmd_worker)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with interrupts.handled():
            return args.handler(args)
    except FedarenaError as error:
        print(f"error: {error}" if not isinstance(error, ScenarioError) else str(error), file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as error:
        signum = getattr(error, "signum", signal.SIGINT)
        note = "; the results file keeps every completed round" if args.command == "run" else ""
        print(f"\nstopped by {signal.Signals(signum).name}{note}", file=sys.stderr)
        return 128 + signum


def console_main() -> None:
    """The ``fedarena`` script: `main`, then an exit that cannot hang.

    After an interrupt, a TFF call may still be blocked in one of TFF's
    threads on a worker we have already stopped; the interpreter's normal
    shutdown would wait for it.  Everything is written and every worker is
    stopped by now, so the process leaves at once.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    console_main()
