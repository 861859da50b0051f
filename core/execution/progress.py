"""What a run shows while it goes (``fedarena run --progress``).

Four modes:

- ``bar``: one line on a terminal, redrawn with ``\\r`` and cut to the
  terminal's width (never wrapped): round i/N, elapsed time, the ETA from
  the mean of recent rounds, the latest metrics.  During start-up (before
  round 1) a spinner names what is happening (`Progress.phase`); a daemon
  thread animates it and keeps the times current.  Anything else printed to
  ``sys.stderr`` meanwhile clears the line first, so it never lands in the
  middle of the bar.
- ``lines``: plain, flushed lines for logs (nohup, SLURM, CI): each
  start-up phase (``starting: importing TensorFlow``), then one line per
  round, or every N rounds so that a run prints about `MAX_LINES` at most
  (the first and last round always).
- ``none``: nothing (the command still prints its final summary).
- ``auto``: ``bar`` on a terminal, ``lines`` otherwise.

`Progress` is one run's display; `SweepProgress` a sweep's: a line as each
point starts and ends (with ``--jobs`` too), the ETA of the whole sweep, and
for points run in this process a `Progress` of their own on the same line.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import threading
import time
from collections import deque

MODES = ("auto", "bar", "lines", "none")
MAX_LINES = 100  # round lines of one run in ``lines`` mode, about
RECENT = 10  # rounds whose mean time gives the ETA
TICK = 0.1  # seconds between two frames of the spinner
SPINNER = "|/-\\"


def resolve_mode(mode: str, stream) -> str:
    """``bar``, ``lines`` or ``none``: ``auto`` decides by the stream."""
    if mode not in MODES:
        raise ValueError(f"progress mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode != "auto":
        return mode
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


def duration(seconds: float) -> str:
    """``14.2 s``, ``3m05s``, ``2h07m``."""
    if seconds < 59.95:
        return f"{max(seconds, 0.0):.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _shown(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


class _Terminal:
    """One stream shared by the displays of a command: the transient line
    (bar or spinner) that is on it, and the permanent lines printed above.

    While a display is shown, ``sys.stderr`` (when that is the stream) is a
    `_Guard`: a write from anywhere else first clears the transient line,
    and the next frame draws it again below what was written."""

    def __init__(self, stream):
        self.stream = stream
        self.lock = threading.RLock()
        self.drawn = 0  # characters of the transient line now on the terminal
        self.held = False  # someone else's line is half written: draw nothing
        self.guard: _Guard | None = None

    def columns(self) -> int:
        columns = shutil.get_terminal_size((0, 0)).columns
        if columns <= 0:
            try:
                columns = os.get_terminal_size(self.stream.fileno()).columns
            except (AttributeError, OSError, ValueError):
                columns = 80
        return max(columns, 10)

    def show(self, text: str) -> None:
        """Put ``text`` on the transient line, cut to fit the width."""
        with self.lock:
            if self.held:
                return
            text = text[: self.columns() - 1]  # the last column would wrap on some terminals
            self.stream.write("\r" + text.ljust(self.drawn))
            self.stream.flush()
            self.drawn = len(text)

    def clear(self) -> None:
        with self.lock:
            if self.drawn:
                self.stream.write("\r" + " " * self.drawn + "\r")
                self.stream.flush()
                self.drawn = 0

    def print(self, text: str) -> None:
        """A permanent line (above the transient one, which the next frame draws again)."""
        with self.lock:
            self.clear()
            self.stream.write(text + "\n")
            self.stream.flush()

    def end_line(self) -> None:
        """Leave the transient line as it is and move below it."""
        with self.lock:
            if self.drawn:
                self.stream.write("\n")
                self.stream.flush()
                self.drawn = 0

    def guard_stderr(self) -> None:
        with self.lock:
            if self.guard is None and sys.stderr is self.stream:
                self.guard = _Guard(self)
                sys.stderr = self.guard

    def unguard_stderr(self) -> None:
        with self.lock:
            if self.guard is not None and sys.stderr is self.guard:
                sys.stderr = self.stream
            self.guard = None


class _Guard:
    """``sys.stderr`` while a transient line is shown: writes clear it first."""

    def __init__(self, terminal: _Terminal):
        self._terminal = terminal

    def write(self, text: str) -> int:
        terminal = self._terminal
        with terminal.lock:
            terminal.clear()
            written = terminal.stream.write(text)
            if text:
                terminal.held = not text.endswith("\n")
            return written

    def __getattr__(self, name):
        return getattr(self._terminal.stream, name)


class _Display:
    """A transient line on a `_Terminal`, animated by a daemon thread in
    ``bar`` mode, with start-up phases."""

    def __init__(self, terminal: _Terminal, mode: str, clock=time.perf_counter, tick: float | None = TICK):
        self.terminal = terminal
        self.mode = mode
        self.clock = clock
        self.tick = tick
        self.started = clock()
        self.phases: list[str] = []  # every phase announced, in order
        self.current_phase: str | None = None
        self.phase_started = self.started
        self.closed = False
        self._frame = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def stream(self):
        return self.terminal.stream

    def phase(self, text: str) -> None:
        """Say what is happening before the first round: a spinner line
        (``bar``) or ``starting: TEXT`` (``lines``)."""
        if self.closed:
            return
        self.phases.append(text)
        self.current_phase, self.phase_started = text, self.clock()
        if self.mode == "lines":
            self.terminal.print(f"starting: {text}")
        elif self.mode == "bar":
            self._animate()
            self.redraw()

    def status(self) -> str | None:
        """The transient line now, or None for none."""
        if self.current_phase is None:
            return None
        spin = SPINNER[self._frame % len(SPINNER)]
        return f"{spin} {self.current_phase}  {duration(self.clock() - self.phase_started)}"

    def redraw(self) -> None:
        if self.mode != "bar" or self.closed:
            return
        with self.terminal.lock:
            text = self.status()
            if text is not None:
                self.terminal.show(text)

    def _animate(self) -> None:
        """Guard stderr, and start the thread that turns the spinner (every
        tick) and keeps the times current (every 5 ticks between rounds)."""
        self.terminal.guard_stderr()
        if self._thread is not None or self.tick is None:
            return

        def loop() -> None:
            while not self._stop.wait(self.tick):
                self._frame += 1
                if self.current_phase is None and self._frame % 5:
                    continue
                try:
                    self.redraw()
                except (OSError, ValueError):  # the stream went away
                    return

        self._thread = threading.Thread(target=loop, name="fedarena-progress", daemon=True)
        self._thread.start()

    def _stop_animation(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1)
        self._thread = None


class Progress(_Display):
    """One run's progress: start-up phases, then a round at a time.

    ``mode`` is one of `MODES`.  Without it, the older ``enabled`` decides:
    True a bar, False nothing, None a bar on a terminal and nothing
    otherwise.  ``every``: in ``lines`` mode, print every that many rounds
    (default: about `MAX_LINES` lines in all).  ``prefix`` starts each line
    (a sweep's ``[3/12] ``); a ``transient`` display clears its line at the
    end instead of leaving the last bar there; ``quiet_lines`` prints no
    line at all in ``lines`` mode (a sweep's point, which its sweep reports).
    """

    def __init__(self, total: int, stream=None, enabled: bool | None = None, *, mode: str | None = None,
                 every: int | None = None, prefix: str = "", transient: bool = False, quiet_lines: bool = False,
                 terminal: _Terminal | None = None, clock=time.perf_counter, tick: float | None = TICK):
        self._owns_terminal = terminal is None  # else the sweep's display guards stderr until the sweep ends
        terminal = terminal or _Terminal(stream or sys.stderr)
        if mode is None:
            legacy = terminal.stream.isatty() if enabled is None else enabled
            mode = "bar" if legacy else "none"
        mode = resolve_mode(mode, terminal.stream)
        if mode == "lines" and quiet_lines:
            mode = "none"
        super().__init__(terminal, mode, clock, tick)
        self.total = total
        self.every = every or max(1, math.ceil(total / MAX_LINES))
        self.prefix = prefix
        self.transient = transient
        self.latest: dict[str, float] = {}
        self.hidden: tuple[str, ...] = ()  # prefixes of metrics not shown (`execute`: detection_ without detectors)
        self.round = 0  # the last round done
        self.first_round: int | None = None
        self._mark = self.started  # when the round now running began
        self._times: deque[float] = deque(maxlen=RECENT)
        self._printed = 0  # the last round printed in ``lines`` mode

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def phase(self, text: str) -> None:
        super().phase(text)
        self._mark = self.clock()  # a round's time starts after the last phase began

    def eta(self) -> float | None:
        """Seconds left: the mean of the recent rounds' times, times the
        rounds left; None until a round other than the first has been timed
        (the first also builds the graph)."""
        if self.round >= self.total:
            return 0.0
        if not self._times:
            return None
        return sum(self._times) / len(self._times) * (self.total - self.round)

    def update(self, result) -> None:
        now = self.clock()
        self.latest.update(result.metrics)
        if self.first_round is None:
            self.first_round = result.round
        else:
            self._times.append(now - self._mark)
        self._mark = now
        self.round = result.round
        self.current_phase = None
        if self.mode == "bar":
            self._animate()
            self.redraw()
        elif self.mode == "lines":
            if result.round in (self.first_round, self.total) or result.round % self.every == 0:
                self._print_round()

    def _metrics(self) -> list[tuple[str, float]]:
        return [(name, value) for name, value in self.latest.items()
                if _shown(value) and not name.startswith(self.hidden)]

    def _times_text(self, separator: str = "  ") -> str:
        eta = self.eta()
        return f"elapsed {duration(self.clock() - self.started)}{separator}eta {'--' if eta is None else duration(eta)}"

    def _print_round(self) -> None:
        self._printed = self.round
        metrics = "".join(f"  {name} {value:.4f}" for name, value in self._metrics())
        self.terminal.print(f"{self.prefix}round {self.round}/{self.total}{metrics}  {self._times_text()}")

    def status(self) -> str | None:
        if self.current_phase is not None or self.round == 0:
            text = super().status()
            return None if text is None else self.prefix + text
        columns = self.terminal.columns()
        eta = self.eta()
        times = f" {duration(self.clock() - self.started)}, eta {'--' if eta is None else duration(eta)}"
        metrics = [f"  {name.removeprefix('test_')} {value:.4f}" for name, value in self._metrics()]
        counter = f"{self.prefix}round {self.round}/{self.total}"
        # The bar gets what is left beside the counter, the times and the first metric.
        room = columns - 1 - len(counter) - len(times) - len(metrics[0] if metrics else "") - 3
        width = min(20, room)
        bar = ""
        if width >= 5:
            done = int(width * self.round / max(self.total, 1))
            bar = f" [{'#' * done}{'.' * (width - done)}]"
        line = counter + bar + times
        for metric in metrics:  # whole metrics only, as many as fit: a cut number would mislead
            if len(line) + len(metric) > columns - 1:
                break
            line += metric
        return line

    def close(self) -> None:
        """End the display: the bar stays (or is cleared, ``transient``),
        a spinner is cleared; in ``lines`` mode the last round done is
        printed if it was not (a run that stopped early).  Idempotent."""
        if self.closed:
            return
        self._stop_animation()
        with self.terminal.lock:
            if self.mode == "bar":
                if self.round and not self.transient and self.current_phase is None:
                    self.redraw()
                    self.terminal.end_line()
                else:
                    self.terminal.clear()
                if self._owns_terminal:
                    self.terminal.unguard_stderr()
            elif self.mode == "lines" and self.round and self._printed != self.round:
                self._print_round()
            self.closed = True


class SweepProgress(_Display):
    """A sweep's progress: a line as each point starts (``lines`` mode) and
    ends (``bar`` and ``lines``), with the sweep's elapsed time and ETA
    (the points left times the time per point: after the first point's
    end, the time since then over the points ended since, which counts every
    job and leaves out a ``--jobs`` child's start-up; before, the first
    point's own time, counted from its start, after this process's start-up);
    in ``bar`` mode, a line saying how many points are done and running,
    or the running point's own `Progress` (`point`)."""

    def __init__(self, labels: list[str], stream=None, *, mode: str = "auto", todo: int | None = None,
                 clock=time.perf_counter, tick: float | None = TICK):
        terminal = _Terminal(stream or sys.stderr)
        super().__init__(terminal, resolve_mode(mode, terminal.stream), clock, tick)
        self.labels = labels
        self.todo = len(labels) if todo is None else todo  # points this command runs
        self.running: set[int] = set()
        self.ended_count = 0
        self.first_start: float | None = None  # when the first point started: start-up is not a point's time
        self.first_end = 0.0  # when the first point ended
        self.in_point = False  # a point's own Progress has the line

    def name(self, index: int) -> str:
        label = self.labels[index] or f"point {index}"
        return f"[{index + 1}/{len(self.labels)}] {label}"

    def eta(self) -> float | None:
        left = max(self.todo - self.ended_count, 0)
        if not self.ended_count:
            return None
        if self.ended_count == 1:
            return (self.clock() - (self.started if self.first_start is None else self.first_start)) * left
        # From the first end on: a --jobs child's start-up is in its first point only.
        return (self.clock() - self.first_end) / (self.ended_count - 1) * left

    def _times_text(self) -> str:
        eta = self.eta()
        return f"elapsed {duration(self.clock() - self.started)}, eta {'--' if eta is None else duration(eta)}"

    def started_point(self, index: int) -> None:
        if self.first_start is None:
            self.first_start = self.clock()
        self.running.add(index)
        self.current_phase = None
        if self.mode == "lines":
            self.terminal.print(f"{self.name(index)}: started")
        elif self.mode == "bar":
            self._animate()
            self.redraw()

    def point(self, index: int, rounds: int) -> Progress:
        """The display of a point run in this process (``--jobs 1``)."""
        self.in_point = True
        return Progress(rounds, mode=self.mode, prefix=f"{self.name(index)}  ", transient=True, quiet_lines=True,
                        terminal=self.terminal, clock=self.clock, tick=self.tick)

    def ended(self, outcome) -> None:
        """``outcome``: a `PointOutcome`."""
        self.running.discard(outcome.index)
        self.ended_count += 1
        if self.ended_count == 1:
            self.first_end = self.clock()
        self.in_point = False
        if self.mode == "none":
            return
        if outcome.status == "complete":
            metric = next(((n, v) for n, v in outcome.final.items() if n == "test_accuracy" and _shown(v)), None)
            metric = metric or next(((n, v) for n, v in outcome.final.items() if _shown(v)), None)
            detail = f"  {metric[0]} {metric[1]:.4f}" if metric else ""
        else:
            detail = f": {outcome.message}" if outcome.message else ""
        self.terminal.print(f"{self.name(outcome.index)}: {outcome.status}{detail}  ({self._times_text()})")
        self.redraw()

    def status(self) -> str | None:
        if self.in_point:
            return None
        if self.current_phase is not None:
            return super().status()
        if not self.running and not self.ended_count:
            return None
        return (f"sweep: {self.ended_count}/{self.todo} points done, {len(self.running)} running  "
                f"{self._times_text()}")

    def close(self) -> None:
        if self.closed:
            return
        self._stop_animation()
        with self.terminal.lock:
            if self.mode == "bar":
                self.terminal.clear()
                self.terminal.unguard_stderr()
            self.closed = True
