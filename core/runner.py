"""One scenario run from start to status: TFF workers, rounds, results file,
lifecycle hooks and progress, with the right status on every way out."""

from __future__ import annotations

import sys
import time

import attrs

from fedarena.core import interrupts
from fedarena.core.check import Scenario
from fedarena.core.errors import FedarenaError, RunError
from fedarena.core.failures import PluginFailure, failing_role
from fedarena.core.registry import Registry
from fedarena.core.results import ResultsWriter
from fedarena.core.workers import tff_workers


@attrs.frozen
class RunInfo:
    """What lifecycle hooks receive about the run."""

    scenario: Scenario
    output: str
    workers: tuple[str, ...]


class Progress:
    """A one-line progress display on a terminal; silent otherwise (the
    final summary is printed either way)."""

    def __init__(self, total: int, stream=None, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.total = total
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.latest: dict[str, float] = {}
        self.started = time.perf_counter()

    def update(self, result) -> None:
        self.latest.update(result.metrics)
        if not self.enabled:
            return
        width = 24
        done = int(width * result.round / self.total)
        metrics = "  ".join(f"{k.removeprefix('test_')} {v:.4f}" for k, v in self.latest.items())
        elapsed = time.perf_counter() - self.started
        line = f"\r[{'#' * done}{'.' * (width - done)}] round {result.round}/{self.total}  {metrics}  {elapsed:.1f} s"
        self.stream.write(line)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _blame(scenario: Scenario, registry: Registry, error: BaseException) -> str:
    """'the aggregator 'krum' failed: ' when the error can be traced to a plugin."""
    role = failing_role(error)
    if role is None:
        return ""
    if role == "aggregator":
        plugin, what = scenario.aggregator, "aggregator"
    else:
        kind, index = role.rsplit("_", 1)
        plugin = (scenario.attacks[int(index)].attack if kind == "attack" else scenario.detectors[int(index)])
        what = kind
    return f"{what} '{registry.name_of(plugin)}' failed: "


def run_scenario(
    scenario: Scenario,
    registry: Registry,
    *,
    force: bool = False,
    workers: list[str] | None = None,
    progress: Progress | None = None,
    resume: bool = False,
) -> dict:
    """Run every round, writing each to the results file as it completes.

    Returns the final metrics.  Raises `RunError` on failure and lets
    `KeyboardInterrupt` through; the file's ``status`` says which happened.
    """
    from fedarena.core.engine import Run

    writer = ResultsWriter(scenario.output, force, resume)  # refuse before any work
    checkpoint = writer.resume(scenario) if resume else None
    progress = progress or Progress(scenario.rounds)
    hook = registry.hook
    with tff_workers(workers) as pool:
        try:
            run = Run(scenario)
        except FedarenaError:
            raise
        except PluginFailure as failure:
            raise RunError(f"preparing the run failed: {_blame(scenario, registry, failure)}{failure}") from failure
        except Exception as error:
            raise RunError(f"preparing the run failed: {type(error).__name__}: {error}") from error
        run.watch = pool
        info = RunInfo(scenario, str(writer.path), tuple(pool.addresses))
        if checkpoint is None:
            try:
                writer.start(scenario, registry, run.class_histogram, run.groups, tuple(workers or ()))
            except OSError as error:
                raise RunError(f"cannot write the results file {writer.path}: {error}") from None
        hook.fedarena_run_start(run=info)
        status, message, final, done = "failed", "", {}, 0
        resume_from = {}
        if checkpoint is not None:
            done = checkpoint.rounds_done
            resume_from = dict(weights=checkpoint.weights, state=checkpoint.state or None, first_round=done + 1,
                               detection_totals=checkpoint.detection_totals)
        try:
            for result in run.rounds(**resume_from):
                writer.write_round(result)
                done = result.round
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
            writer.finish(status, message)
            hook.fedarena_run_end(run=info, status=status)
    return final
