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

from fedarena.core.execution import interrupts
from fedarena.core.errors import FedarenaError, ScenarioError, UsageError


def read_scenario(path: str):
    from fedarena.core.language.parser import parse

    file = Path(path)
    if not file.exists():
        raise UsageError(f"{path}: no such scenario file")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(f"{path}: not a UTF-8 text file ({error.reason} at byte {error.start})") from None
    except OSError as error:  # no permission, a folder, a device that fails
        raise UsageError(f"{path}: cannot read it: {error.strerror or error}") from None
    return parse(text, str(path))


def cmd_run(args) -> int:
    from fedarena.core.execution.backends.choice import check_combination, requested_backend
    from fedarena.core.plugin.registry import default_registry
    from fedarena.core.scenario.sweep import check_points

    if args.resume and args.force:
        raise UsageError("--resume continues an existing results file; --force would overwrite it: choose one")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {args.jobs}")
    workers = [w.strip() for w in args.workers.split(",") if w.strip()] if args.workers else None
    backend = requested_backend(args.backend)
    check_combination(backend, workers)
    registry = default_registry()
    for problem in registry.load_errors:
        print(f"warning: {problem}", file=sys.stderr)
    spec = read_scenario(args.file)
    points = check_points(spec, registry, args.output)
    if args.point is not None:
        if not 0 <= args.point < len(points):
            raise UsageError(f"--point {args.point}: {args.file} has points 0..{len(points) - 1}")
        points = [points[args.point]]
    # Quiet TensorFlow's C++ start-up chatter unless the user asked for it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from fedarena.core.execution.observers import TensorBoard
    from fedarena.core.execution.runner import Progress, SweepProgress, run_scenario, run_sweep, serve_points

    if args.serve_points:
        return serve_points(points, registry, workers, backend, tensorboard=args.tensorboard)
    if len(points) == 1 and (spec.sweep is None or args.point is not None):
        scenario = points[0][1]
        observers = [TensorBoard(args.tensorboard)] if args.tensorboard else []
        final = run_scenario(scenario, registry, force=args.force, workers=workers, resume=args.resume,
                             progress=Progress(scenario.rounds, mode=args.progress), backend=backend,
                             observers=observers)
        shown = {name: value for name, value in final.items() if value == value}  # no NaN
        if not scenario.detectors:  # detection metrics then only count non-finite updates
            shown = {name: value for name, value in shown.items() if not name.startswith("detection_")}
        summary = "  ".join(f"{name} {value:.4f}" for name, value in shown.items())
        done, status = _outcome(scenario.output, scenario.rounds)
        if status == "complete":
            print(f"{scenario.title}: {scenario.rounds} rounds complete; {summary}")
        else:  # a plugin's fedarena_round_end stopped it
            print(f"{scenario.title}: {status} after {done} of {scenario.rounds} rounds; {summary}")
        print(f"results written to {scenario.output}")
        return 0

    output = points[0][1].output
    progress = SweepProgress([point.label for point, _ in points], mode=args.progress)
    outcomes = run_sweep(points, registry, scenario_path=args.file, output=output, force=args.force,
                         resume=args.resume, jobs=args.jobs, workers=workers, backend=backend, progress=progress,
                         tensorboard=args.tensorboard)
    failed = [o for o in outcomes if o.status != "complete"]
    for outcome in failed:
        print(f"error: point {outcome.index} ({outcome.label}) {outcome.status}: {outcome.message}", file=sys.stderr)
    from fedarena.core.results import reader

    with reader.open_results(output) as f:  # the whole file: a --resume runs only what was left
        statuses = reader.point_statuses(f)
    complete = statuses.count("complete")
    print(f"{spec.title}: sweep of {len(points)} runs, {complete} complete now, "
          f"{len(statuses) - complete} failed; results written to {output}")
    return 1 if failed else 0


def cmd_check(args) -> int:
    from fedarena.core.plugin.registry import default_registry
    from fedarena.core.scenario.sweep import check_points

    registry = default_registry()
    for problem in registry.load_errors:
        print(f"warning: {problem}", file=sys.stderr)
    failed = 0
    for path in args.files:
        try:
            spec = read_scenario(path)
            runs = check_points(spec, registry)
        except (ScenarioError, UsageError) as error:
            print(f"error: {error}" if isinstance(error, UsageError) else error, file=sys.stderr)
            failed += 1
            continue
        if spec.sweep is None:
            scenario = runs[0][1]
            attackers = sum(g.num_clients for g in scenario.attacks)
            print(f"{path}: ok ({scenario.rounds} rounds, {scenario.num_clients} clients, {attackers} attackers)")
        else:
            axes = ", ".join(f"{axis.path} x{len(axis.values)}" for axis in spec.sweep.axes)
            print(f"{path}: ok (a sweep of {len(runs)} run{'s' if len(runs) != 1 else ''}: {axes})")
    return 2 if failed else 0


def cmd_fmt(args) -> int:
    from fedarena.core.language.fmt import format_text

    failed, changed = 0, 0
    for path in args.files:
        file = Path(path)
        try:
            if not file.is_file():
                raise UsageError(f"{path}: no such scenario file")
            try:
                text = file.read_bytes().decode("utf-8")
            except UnicodeDecodeError as error:
                raise UsageError(f"{path}: not a UTF-8 text file ({error.reason} at byte {error.start})") from None
            formatted = format_text(text, str(path))
        except (ScenarioError, UsageError) as error:
            print(f"error: {error}" if isinstance(error, UsageError) else error, file=sys.stderr)
            failed += 1
            continue
        if formatted == text:
            continue
        changed += 1
        if args.check:
            print(f"would reformat {path}")
        else:
            file.write_text(formatted, encoding="utf-8")
            print(f"reformatted {path}")
    if failed:
        return 2
    return 1 if args.check and changed else 0


def _client_plots(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"give a number of runs or 'all', got {text!r}")
    return int(text)


def _outcome(path: str, rounds: int) -> tuple[int, str]:
    """A finished run's rounds done and status, as its results file says."""
    from fedarena.core.results import reader, schema

    try:
        with reader.open_results(path) as f:
            attributes = reader.run_attributes(f)
    except (UsageError, OSError):
        return rounds, schema.COMPLETE
    return int(attributes.get(schema.ROUNDS_DONE, rounds)), str(attributes.get(schema.STATUS, schema.COMPLETE))


def cmd_plugins(args) -> int:
    from fedarena.core.plugin.interfaces import Plugin
    from fedarena.core.plugin.kinds import KINDS
    from fedarena.core.plugin.registry import default_registry

    registry = default_registry()
    if args.kind and args.kind not in KINDS:
        raise UsageError(f"unknown plugin kind '{args.kind}'; kinds: {', '.join(KINDS)}")
    entries = registry.entries(args.kind)
    if args.json:
        print(json.dumps([
            {
                "kind": e.kind, "name": e.name, "doc": e.doc,
                "distribution": e.provider.distribution, "version": e.provider.version,
                "parameters": [dict(p.as_dict(), default=registry.label(p.default)) if isinstance(p.default, Plugin)
                               else p.as_dict() for p in e.params()],
            }
            for e in entries
        ], indent=2, default=repr))
    else:
        width = max((len(e.name) for e in entries), default=0) + 2
        for e in entries:
            doc = e.doc if len(e.doc) <= 120 else e.doc[:117].rstrip() + "..."
            print(f"{e.kind:<11}{e.name:<{width}}{e.provider.distribution} {e.provider.version}  {doc}")
            for p in e.params():
                shown = registry.label(p.default) if isinstance(p.default, Plugin) else repr(p.default)
                default = "required" if p.required else f"default {shown}"
                bounds = f", {p.range_text()}" if p.range_text() else ""
                print(f"{'':{11 + width}}{p.name}: {p.type_name()} ({default}{bounds})  {p.doc}")
    for problem in registry.load_errors:
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def cmd_report(args) -> int:
    from fedarena.core.results.report import report

    written = report(args.files, args.out, with_csv=args.csv, rows=args.rows, cols=args.cols,
                     client_plots=args.client_plots)
    for path in written:
        print(path)
    return 0


def cmd_show(args) -> int:
    from fedarena.core.results.report import show

    for path in args.files:
        print(show(path))
    return 0


def port_number(text: str) -> int:
    """A TCP port, 0..65535 (0: a free one), for argparse."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535 (0: a free one), got {port}")
    return port


def cmd_worker(args) -> int:
    from fedarena.core.execution.backends.choice import requested_backend, resolve

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535 (0: a free one), got {args.port}")

    requested = requested_backend(args.backend)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if resolve(requested) == "local":
        from fedarena.core.execution.backends.service import serve_local

        serve_local(args.host, args.port)
        return 0
    from fedarena.core.execution.backends.worker import serve

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
    run.add_argument("--backend", choices=("auto", "local", "worker"), default=None,
                     help="where the rounds compute: local (fedarena's in-process executor, on the GPU if TensorFlow "
                          "sees one), worker (TFF's C++ worker, CPU only) or auto (default, or FEDARENA_BACKEND)")
    run.add_argument("--workers", metavar="HOST:PORT,...",
                     help="running `fedarena worker`s to split each round's clients across (default: none)")
    run.add_argument("--jobs", type=int, default=1,
                     help="for a sweep: run this many points at once, on as many processes (default: 1)")
    run.add_argument("--point", type=int, help=argparse.SUPPRESS)  # one point of a sweep, alone
    run.add_argument("--serve-points", action="store_true", help=argparse.SUPPRESS)  # a --jobs child
    run.add_argument("--progress", choices=("auto", "bar", "lines", "none"), default="auto",
                     help="progress on stderr: bar (one line redrawn, for a terminal), lines (a plain line per "
                          "round or every few rounds, and per sweep point, for logs), none, or auto (default: bar "
                          "on a terminal, lines otherwise)")
    run.add_argument("--tensorboard", metavar="DIR",
                     help="also write each round to TensorBoard event files in DIR (a sweep: one folder per "
                          "point); view them with `tensorboard --logdir DIR`")
    run.set_defaults(handler=cmd_run)

    check = commands.add_parser(
        "check", help="check scenarios without running them",
        description="Parse and check scenarios: syntax, plugin names, parameters and cross-field rules; "
        "a sweep is checked at every point of its grid.",
    )
    check.add_argument("files", nargs="+", metavar="FILE.fls")
    check.set_defaults(handler=cmd_check)

    fmt = commands.add_parser(
        "fmt", help="lay scenarios out in the canonical style",
        description="Rewrite scenarios in the canonical layout (two-space indentation, one statement per "
        "line, 'name(a = 1, b = [1, 2])' spacing, comments kept). With --check, change nothing and exit 1 "
        "if a file would change.",
    )
    fmt.add_argument("files", nargs="+", metavar="FILE.fls")
    fmt.add_argument("--check", action="store_true", help="only report the files that would change (exit 1)")
    fmt.set_defaults(handler=cmd_fmt)

    plugins = commands.add_parser("plugins", help="list the plugins that are installed",
                                  description="List plugins with their parameters and the distribution providing each.")
    plugins.add_argument("kind", nargs="?", help="only this kind (dataset, split, model, optimizer, attack, ...)")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(handler=cmd_plugins)

    report = commands.add_parser(
        "report", help="plots and tables from results files",
        description="Write PNG plots (each metric per round, titled with what it measures and which way is "
        "good; per-client scores; for sweeps, heatmaps of the final values over two sweep axes, the other axes "
        "as one panel per value, seeds as mean ± std with n) and Markdown tables.",
    )
    report.add_argument("files", nargs="+", metavar="FILE.h5")
    report.add_argument("--out", default="report", help="folder for the plots and tables (default: report)")
    report.add_argument("--csv", action="store_true",
                        help="also export the metrics as CSV: metrics.csv, every run, round and seed in long "
                        "format, and metrics_N.csv per run")
    report.add_argument("--client-plots", type=_client_plots, default=24, metavar="N|all",
                        help="draw the per-client plot of the first N runs only (default: 24; 'all': every run)")
    report.add_argument("--rows", metavar="AXIS",
                        help="the sweep axis of the heatmaps' rows (default: the axis with the most values)")
    report.add_argument("--cols", metavar="AXIS",
                        help="the sweep axis of the heatmaps' columns (default: the next axis with the most values)")
    report.set_defaults(handler=cmd_report)

    show = commands.add_parser("show", help="summarise results files in the terminal",
                               description="Status, rounds done, final metrics and what the detectors caught.")
    show.add_argument("files", nargs="+", metavar="FILE.h5")
    show.set_defaults(handler=cmd_show)

    worker = commands.add_parser(
        "worker", help="serve TFF computations for runs on other machines",
        description="Run a TFF executor service (TFF's C++ worker, or fedarena's in-process executor with "
        "--backend local) until Ctrl-C or SIGTERM, for "
        "`fedarena run --workers HOST:PORT,...` on other machines. It has no authentication.",
    )
    worker.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0: every interface)")
    worker.add_argument("--port", type=port_number, default=0, help="port to serve on, 0..65535 (default: a free one)")
    worker.add_argument("--backend", choices=("auto", "local", "worker"), default=None,
                        help="what executes the computations: local (fedarena's in-process executor, on this "
                             "machine's GPU if TensorFlow sees one) or worker (TFF's C++ worker, CPU only); default "
                             "auto, or FEDARENA_BACKEND")
    worker.set_defaults(handler=cmd_worker)

    from fedarena.core.cli.data import add_data_commands

    add_data_commands(commands)  # fedarena data list / fetch
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
    try:
        code = main()
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader went away (`fedarena plugins | head`)
        code = 0
    os._exit(code)


if __name__ == "__main__":
    console_main()
