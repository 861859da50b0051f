"""One scenario run from start to status: TFF workers, rounds, results file,
lifecycle hooks and progress, with the right status on every way out."""

from __future__ import annotations

import contextlib
import sys

import attrs

from fedarena.core.execution import interrupts
from fedarena.core.scenario.check import Scenario
from fedarena.core.errors import FedarenaError, RunError
from fedarena.core.execution.failures import PluginFailure, failing_role
from fedarena.core.plugin.interfaces import RunInfo
from fedarena.core.plugin.registry import Registry
from fedarena.core.results.writer import ResultsWriter, SweepFile
from fedarena.core.execution.backends.choice import compute_on, resolve
from fedarena.core.execution.observers import Observers, TensorBoard, point_folder
from fedarena.core.execution.progress import Progress, SweepProgress

__all__ = ["PointOutcome", "Progress", "SweepProgress", "execute", "run_scenario", "run_sweep", "serve_points"]


def _blame(scenario: Scenario, registry: Registry, error: BaseException) -> str:
    """'the aggregator 'krum' failed: ' when the error can be traced to a plugin."""
    role = failing_role(error)
    if role is None:
        return ""
    return f"{role.kind} '{registry.name_of(role.plugin_in(scenario))}' failed: "


def _kept(rounds: int) -> str:
    return "no round is kept" if rounds < 1 else "round 1 is kept" if rounds == 1 else f"rounds 1..{rounds} are kept"


def divergence(result) -> str | None:
    """Why a round's result must not be written, or None: its global model
    is not finite, or every benign client's update was NaN or Inf (the
    server stage drops those, so the model would silently stand still).
    The round is then not written, so a checkpoint is always finite."""
    import numpy as np

    kept_before = _kept(result.round - 1)
    bad = int(np.size(result.weights) - np.count_nonzero(np.isfinite(result.weights)))
    if bad:
        return (f"the global model is no longer finite after round {result.round} ({bad} of "
                f"{np.size(result.weights)} weights are NaN or Inf, although every update aggregated was finite: "
                f"the aggregator returned them, or the server step overflowed float32); {kept_before}")
    benign = ~np.asarray(result.clients["malicious"], bool)
    finite = np.asarray(result.clients["finite"], bool)
    if benign.any() and not finite[benign].any():
        return (f"the local training diverges: in round {result.round} the updates of all "
                f"{np.count_nonzero(benign)} benign clients are NaN or Inf (dropped, so the model would stand "
                f"still; a smaller learning rate may help); {kept_before}")
    return None


def run_scenario(
    scenario: Scenario,
    registry: Registry,
    *,
    force: bool = False,
    workers: list[str] | None = None,
    progress: Progress | None = None,
    resume: bool = False,
    backend: str = "auto",
    observers=(),
) -> dict:
    """Run every round, writing each to the results file as it completes.

    Returns the final metrics.  Raises `RunError` on failure and lets
    `KeyboardInterrupt` through; the file's ``status`` says which happened.
    ``backend`` is where the rounds compute (`backends.choice`);
    ``progress`` shows the run (`progress.Progress`; default: a bar on a
    terminal, nothing otherwise); ``observers`` see every round
    (`observers.Observer`, e.g. `observers.TensorBoard`).
    """
    writer = ResultsWriter(scenario.output, force, resume)  # refuse before any work
    checkpoint = writer.resume(scenario) if resume else None
    progress = progress or Progress(scenario.rounds)
    try:
        start_up(progress, backend, workers)
        with compute_on(backend, workers) as pool:
            return execute(scenario, registry, writer, pool, progress, checkpoint, observers)
    finally:
        progress.close()
        writer.close()  # the output's claim, on every way out


def _model_io(scenario: Scenario) -> tuple[tuple[int, ...], int]:
    """What the model is built for (`FlatModel`): the input shape and the classes of the dataset."""
    info = scenario.dataset.info()
    return tuple(info.input_shape), info.num_classes


def start_up(progress, backend: str, workers: list[str] | None) -> None:
    """Say what takes the first seconds of a command before it happens:
    importing TensorFlow and TFF (unless done already), starting a TFF
    worker; `compute_on` then finds them done."""
    if "tensorflow" not in sys.modules:
        progress.phase("importing TensorFlow")
        import tensorflow  # noqa: F401
    if "tensorflow_federated" not in sys.modules:
        progress.phase("importing TensorFlow Federated")
        from fedarena.core.execution.backends.tff_import import import_tff

        import_tff()  # without its differential-privacy stack, which fedarena never calls
    kind = resolve(backend, workers)
    if kind == "worker":
        progress.phase("starting the TFF worker")
    elif kind == "remote":
        progress.phase("connecting to the TFF workers")


def call_each(caller, **kwargs) -> list[str]:
    """Call every plugin's implementation of a lifecycle hook on its own (in
    pluggy's order), so that one that raises is named and the others still
    run; returns a message for each failure."""
    failures = []
    for impl in reversed(caller.get_hookimpls()):
        try:
            impl.function(**{name: value for name, value in kwargs.items() if name in impl.argnames})
        except Exception as error:
            failures.append(f"plugin '{impl.plugin_name}' failed in {caller.name}: {type(error).__name__}: {error}")
    return failures


def _warn_each(failures: list[str], status: str) -> None:
    """A failing ``fedarena_run_end`` is a warning: the run's status and exit code stand."""
    for failure in failures:
        print(f"fedarena: warning: {failure}; the run's status ({status}) stands", file=sys.stderr, flush=True)


def execute(scenario: Scenario, registry: Registry, writer: ResultsWriter, pool, progress: Progress,
            checkpoint=None, observers=()) -> dict:
    """Run a scenario on the given TFF workers into ``writer`` (from
    ``checkpoint`` when resuming); returns the final metrics.  ``progress``
    is told each start-up phase and round, and closed on every way out;
    ``observers`` see every round written (`observers.Observer`)."""
    from fedarena.core.execution.engine.run import Run

    hook = registry.hook
    watchers = Observers(observers)
    if not scenario.detectors:  # detection metrics then only count non-finite updates
        progress.hidden = ("detection_",)
    try:
        try:
            run = Run(scenario, on_phase=progress.phase)
        except FedarenaError:
            raise
        except PluginFailure as failure:
            raise RunError(f"preparing the run failed: {_blame(scenario, registry, failure)}{failure}") from failure
        except Exception as error:
            raise RunError(f"preparing the run failed: {type(error).__name__}: {error}") from error
    except BaseException:
        progress.close()
        raise
    run.watch = pool
    info = RunInfo(scenario, str(writer.path), tuple(pool.addresses))
    if checkpoint is None:
        try:
            writer.start(scenario, registry, run.class_histogram, run.groups, tuple(pool.given), pool.backend,
                         members=run.members, model_io=_model_io(scenario), start=scenario.start,
                         start_sha256=run.start_sha256)
        except OSError as error:
            run.close()
            progress.close()
            raise RunError(f"cannot write the results file {writer.path}: {error}") from None
    failed_start = call_each(hook.fedarena_run_start, run=info)
    if failed_start:  # the run fails with a message: status 'failed', no traceback
        message = failed_start[0]
        run.close()
        progress.close()
        with contextlib.suppress(Exception):  # the error below says what went wrong first
            writer.finish("failed", message)
        _warn_each(call_each(hook.fedarena_run_end, run=info, status="failed"), "failed")
        raise RunError(f"the run failed before its first round: {message}") from None
    status, message, final, done = "failed", "", {}, 0
    finish_error = None
    resume_from = {}
    if checkpoint is not None:
        done = checkpoint.rounds_done
        resume_from = dict(weights=checkpoint.weights, state=checkpoint.state or None, first_round=done + 1,
                           detection_totals=checkpoint.detection_totals)
    try:
        watchers.start(scenario, registry, info)
        progress.phase(f"round {done + 1} (first call builds the graph)")
        for result in run.rounds(**resume_from):
            diverged = divergence(result)
            if diverged:
                raise RunError(diverged)
            writer.write_round(result)
            done = result.round
            watchers.round(result)
            interrupts.check()
            final.update(result.metrics)
            progress.update(result)
            answers = hook.fedarena_round_end(run=info, round=result.round, metrics=dict(result.metrics))
            if any(answer is False for answer in answers):
                status = "interrupted"
                message = f"stopped by a plugin after round {result.round}"
                break
        else:
            status = "complete"
    except KeyboardInterrupt:
        status, message = "interrupted", f"interrupted by a signal after round {done}"
        raise
    except FedarenaError as error:
        message = f"round {done + 1}: {error}"
        raise
    except Exception as error:
        message = f"round {done + 1}: {_blame(scenario, registry, error)}{type(error).__name__}: {error}"
        raise RunError(f"the run failed in {message}") from error
    finally:
        run.close()
        progress.close()
        watchers.close(status)
        try:
            writer.finish(status, message)
        except Exception as error:  # the rounds written are kept; an error in flight says more
            finish_error = RunError(f"cannot write the results file {writer.path}: {error}; every completed "
                                    f"round up to {done} is kept")
        _warn_each(call_each(hook.fedarena_run_end, run=info, status=status), status)
    if finish_error is not None:
        raise finish_error
    return final


@attrs.frozen
class PointOutcome:
    index: int
    label: str
    status: str
    final: dict
    message: str = ""


def run_sweep(
    points: list,
    registry: Registry,
    *,
    scenario_path: str,
    output: str,
    force: bool = False,
    resume: bool = False,
    jobs: int = 1,
    workers: list[str] | None = None,
    report=None,
    backend: str = "auto",
    progress: SweepProgress | None = None,
    tensorboard: str | None = None,
) -> list[PointOutcome]:
    """Run every point of a sweep into one file (`SweepFile`).

    ``points`` are (SweepPoint, Scenario) pairs.  With ``jobs`` > 1 the
    points run on that many long-lived child processes (`serve_points`),
    each with its own TFF worker (or the given ``workers``), and each
    finished point is merged into the sweep file at once.  A failing point is
    recorded and the others go on.  ``report(outcome)`` is called as each
    point ends.  With ``resume``, complete points are kept and the others
    run again (in-process ones continue from their last round).
    ``progress`` (a `SweepProgress`) shows the points as they start and end;
    without it each in-process point shows a bar on a terminal.  With
    ``tensorboard``, each point writes TensorBoard files into its own
    folder there (`observers.point_folder`).
    """
    sweep = SweepFile(output, force, resume)
    first = points[0][1]
    if resume:
        statuses = sweep.statuses(first.source)
    else:
        sweep.start(first.source, first.title, [p.label for p, _ in points], [p.assignments for p, _ in points])
        statuses = ["pending"] * len(points)
    todo = [i for i, status in enumerate(statuses) if status != "complete"]
    report = report or (lambda outcome: None)
    outcomes: list[PointOutcome] = []
    shown = progress or SweepProgress([p.label for p, _ in points], mode="none")
    shown.todo = len(todo)

    def ended(outcome: PointOutcome) -> None:
        sweep.mark(outcome.index, outcome.status)
        outcomes.append(outcome)
        shown.ended(outcome)
        report(outcome)

    def observers(index: int) -> list:
        return [TensorBoard(point_folder(tensorboard, index, points[index][0].label))] if tensorboard else []

    try:
        if jobs <= 1:
            if todo:
                start_up(shown, backend, workers)
            with compute_on(backend, workers) as pool:
                for index in todo:
                    point, scenario = points[index]
                    writer = ResultsWriter(sweep.location, group=SweepFile.group(index))
                    checkpoint = None
                    if statuses[index] != "pending":
                        try:
                            checkpoint = writer.resume(scenario)
                        except (FedarenaError, KeyError):
                            checkpoint = None  # nothing usable: start the point anew
                    sweep.mark(index, "running")
                    shown.started_point(index)
                    point_progress = progress.point(index, scenario.rounds) if progress else Progress(scenario.rounds)
                    try:
                        final = execute(scenario, registry, writer, pool, point_progress, checkpoint, observers(index))
                        sweep.label(index, point.label, point.assignments)
                        ended(PointOutcome(index, point.label, "complete", final))
                    except RunError as error:
                        sweep.label(index, point.label, point.assignments)
                        ended(PointOutcome(index, point.label, "failed", {}, str(error)))
                    except KeyboardInterrupt:
                        sweep.label(index, point.label, point.assignments)
                        sweep.mark(index, "interrupted")
                        raise
        else:
            _run_jobs(points, todo, sweep, scenario_path, jobs, workers, ended, backend, shown, tensorboard)
    except KeyboardInterrupt:
        sweep.finish("interrupted")
        raise
    except BaseException:
        sweep.close()
        raise
    finally:
        shown.close()
    failed = any(o.status != "complete" for o in outcomes)
    sweep.finish("failed" if failed else "complete")
    return outcomes


class _PointServer:
    """One long-lived child ``fedarena run FILE --serve-points``: it pays
    TensorFlow's import and a TFF worker's start once, then runs the points
    it is given one at a time (see `serve_points`)."""

    def __init__(self, scenario_path: str, workers, scratch, number: int, backend: str = "auto",
                 tensorboard: str | None = None):
        import os
        import subprocess

        command = self.command(scenario_path, workers, backend)
        if tensorboard:
            command = [*command, "--tensorboard", str(tensorboard)]
        self.log = open(scratch / f"server{number}.log", "w+")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        self.index: int | None = None  # the point it is running
        self.part = None
        self._pending = b""
        self._read = 0  # where the log's unscanned part starts (a tell() position)

    @staticmethod
    def command(scenario_path: str, workers, backend: str = "auto") -> list[str]:
        command = [sys.executable, "-m", "fedarena.core.cli.main", "run", scenario_path, "--serve-points",
                   "--progress", "none", "--backend", backend]
        return command + ["--workers", ",".join(workers)] if workers else command

    def give(self, index: int, part) -> None:
        self.index, self.part = index, part
        self.process.stdin.write(f"{index}\t{part}\n".encode())
        self.process.stdin.flush()

    def replies(self) -> list[str]:
        """Reply lines that have arrived; an empty string when the child
        has ended (end of file)."""
        import os

        chunk = os.read(self.process.stdout.fileno(), 65536)
        if not chunk:
            return [""]
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        return [line.decode() for line in lines]

    def warnings(self) -> list[str]:
        """The warnings the child has printed since the last call (e.g. that
        its worker could not be isolated); its other output stays in its log."""
        found = []
        self.log.seek(self._read)
        while (line := self.log.readline()).endswith("\n"):  # a half-written line waits
            self._read = self.log.tell()
            if line.startswith("fedarena: warning:"):
                found.append(line.rstrip("\n"))
        return found

    def last_words(self) -> str:
        self.log.seek(0)
        lines = self.log.read().strip().splitlines()
        return lines[-1] if lines else f"its process ended with code {self.process.wait()}"

    def stop(self, interrupt: bool = False) -> None:
        """End the child: the end of its input lets an idle one leave; with
        ``interrupt``, SIGTERM stops a point in progress (the child marks
        its file interrupted).  Waits for it."""
        import contextlib

        if interrupt and self.process.poll() is None:
            self.process.terminate()
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        self.process.wait()
        self.log.close()


def _run_jobs(points, todo, sweep, scenario_path, jobs, workers, ended, backend: str = "auto", progress=None,
              tensorboard: str | None = None) -> None:
    """Points on ``jobs`` long-lived child processes, each taking the next
    waiting point as soon as it is free; each finished point is merged into
    the sweep file at once.  A child that dies fails only the point it was
    running, and a new child takes its place."""
    import selectors
    import shutil
    import tempfile
    from pathlib import Path

    from fedarena.core.results.reader import load_point

    scratch = Path(tempfile.mkdtemp(prefix="fedarena-sweep-"))
    waiting = list(todo)
    servers: list[_PointServer] = []
    selector = selectors.DefaultSelector()
    started = 0
    tries: dict[int, int] = {}  # children that died running each point
    warned: set[str] = set()

    def give_next(server: _PointServer) -> None:
        index = waiting.pop(0)
        server.give(index, scratch / f"point{index}.h5")
        sweep.mark(index, "running")
        if progress is not None:
            progress.started_point(index)

    def collect(server: _PointServer) -> None:
        """Merge the part file of the server's point into the sweep file."""
        index, part = server.index, server.part
        server.index = server.part = None
        if part is not None and part.exists():
            sweep.merge(index, part)
            part.unlink()
        point, _ = points[index]
        sweep.label(index, point.label, point.assignments)

    if progress is not None and waiting:
        count = min(jobs, len(waiting))
        progress.phase(f"starting {count} process{'es' if count > 1 else ''} for the points (each imports "
                       f"TensorFlow and starts its TFF worker)")
    try:
        while waiting or any(s.index is not None for s in servers):
            while waiting and len(servers) < jobs:
                started += 1
                server = _PointServer(scenario_path, workers, scratch, started, backend, tensorboard)
                servers.append(server)
                selector.register(server.process.stdout, selectors.EVENT_READ, server)
                give_next(server)
            for key, _ in selector.select(timeout=0.2):
                server = key.data
                replies = server.replies()
                for warning in server.warnings():
                    if warning not in warned:  # every child would say the same
                        warned.add(warning)
                        print(warning, file=sys.stderr, flush=True)
                for line in replies:
                    index = server.index
                    if line == "":  # the child died; a new one takes over
                        selector.unregister(server.process.stdout)
                        servers.remove(server)
                        message = server.last_words()
                        server.stop()
                        if index is not None:
                            collect(server)
                            tries[index] = tries.get(index, 0) + 1
                            if tries[index] < 2:  # it may have died of something else: once more
                                waiting.insert(0, index)
                            else:
                                ended(PointOutcome(index, points[index][0].label, "failed", {}, message))
                        break
                    status, _, message = line.partition("\t")
                    collect(server)
                    if status == "complete":
                        view = load_point(sweep.location, index)
                        final = {m: view.final(m) for m in view.metrics if m != "round"}
                        ended(PointOutcome(index, points[index][0].label, "complete", final))
                    else:
                        ended(PointOutcome(index, points[index][0].label, "failed", {}, message))
                    if waiting:
                        give_next(server)
            interrupts.check()
    except KeyboardInterrupt:
        for server in servers:
            server.stop(interrupt=True)  # each marks its own file interrupted
            if server.index is not None:
                index = server.index
                collect(server)
                sweep.mark(index, "interrupted")
        servers = []
        raise
    finally:
        for server in servers:  # idle ones: end of input lets them leave
            server.stop()
        selector.close()
        shutil.rmtree(scratch, ignore_errors=True)


def serve_points(points: list, registry: Registry, workers: list[str] | None = None, backend: str = "auto",
                 tensorboard: str | None = None) -> int:
    """The child side of ``--jobs``: read "INDEX<TAB>PART_FILE" lines on
    stdin, run that point into that file, answer "complete" or
    "failed<TAB>message" on stdout; leave at the end of input.  One TFF
    worker serves every point.  Anything else printed goes to stderr, so
    that stdout carries only the answers.  With ``tensorboard``, each point
    writes TensorBoard files as it would in the parent (`run_sweep`)."""
    import os

    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    with compute_on(backend, workers) as pool:
        for line in sys.stdin:
            interrupts.check()
            index, part = line.rstrip("\n").split("\t")
            point, scenario = points[int(index)]
            writer = ResultsWriter(part, force=True)
            try:
                observers = [TensorBoard(point_folder(tensorboard, int(index), point.label))] if tensorboard else []
                execute(scenario, registry, writer, pool, Progress(scenario.rounds, mode="none"), observers=observers)
                answers.write("complete\n")
            except RunError as error:
                answers.write("failed\t" + " ".join(str(error).split()) + "\n")
                pool.check()  # a dead worker would fail every later point: leave, a new child takes over
    return 0
