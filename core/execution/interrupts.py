"""Ctrl-C and SIGTERM, turned into an orderly stop.

An exception raised from a signal handler can land anywhere, inside h5py's
or TensorFlow's own code included, and leave them in a bad state.  So the
first SIGINT or SIGTERM only records the request; fedarena raises
`Interrupted` at the points where stopping is safe (between rounds, and
while waiting for a TFF call).  A second signal raises at once.
"""

from __future__ import annotations

import contextlib
import signal


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop by a signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_requested: int | None = None


def _on_signal(signum, frame):
    global _requested
    if _requested is not None:
        raise Interrupted(signum)
    _requested = signum


def check() -> None:
    """Raise `Interrupted` if a stop was requested."""
    if _requested is not None:
        raise Interrupted(_requested)


@contextlib.contextmanager
def handled():
    """Within the block, SIGINT and SIGTERM request a stop (see `check`)."""
    global _requested
    _requested = None
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _requested = None


def sleep(seconds: float) -> None:
    """Sleep, raising `Interrupted` if a stop is requested."""
    import time

    check()
    time.sleep(seconds)
    check()
