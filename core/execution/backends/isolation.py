"""TFF's worker in a network namespace of its own, reached through a relay.

TFF's C++ ``worker_binary`` takes only ``--port``: it listens on every
network interface of the machine, without authentication, and whoever
reaches it can run code here.  ``python -m fedarena.core.execution.backends.isolation`` starts
it where no outside interface exists:

1. it creates its listening socket first, in the caller's network
   namespace, on exactly the address asked for (``tcp:HOST:PORT``, or
   ``unix:PATH`` for a worker private to one run);
2. it moves into a new user and network namespace (``unshare``), keeping
   its uid and gid (one-line ``uid_map`` and ``gid_map``), and brings the
   namespace's loopback interface up; there is no other interface there;
3. it forks the relay, which accepts on the socket of step 1 and forwards
   each connection to ``127.0.0.1:INNER_PORT`` inside the new namespace
   (sockets created after ``unshare`` live there), then replaces itself
   with ``worker_binary --port=INNER_PORT`` (``exec``).

So the process fedarena starts *is* the worker, and stays fedarena's child::

    fedarena ── worker_binary (this module, exec'd; own user + network namespace)
                    └── relay (forked before the exec; holds the listening socket)

Lifetimes: the caller asks the kernel to end the worker when the caller
dies (``--parent`` and ``PR_SET_PDEATHSIG``, set here before anything
else); the relay asks the same of the worker; the relay ends the worker if
it leaves by itself.  fedarena stops the worker by its pid, and the relay
then ends with it.

One line on ``--status-fd`` says how it went, then the descriptor closes:

    isolated RELAY_PID INNER_PORT PORT   the worker runs isolated; PORT is the
                                         bound TCP port (0 for a Unix socket)
    unavailable REASON                   namespaces are not available here
                                         (exit 3; the caller may fall back)
    error REASON                         e.g. the address is in use (exit 2)

This module uses the standard library only: it must start in milliseconds,
and never imports TensorFlow.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import signal
import socket
import struct
import sys
import threading
import time

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
_PR_SET_PDEATHSIG = 1
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = "16sH22x"  # struct ifreq: interface name, then ifr_flags in a 24-byte union

# For tests only: make `unshare` fail with this errno name (e.g. EPERM), as it
# does under Docker's default seccomp profile or Ubuntu's AppArmor rules.
FAKE_UNSHARE_ERRNO = "FEDARENA_TEST_UNSHARE_ERRNO"

_BUFFER = 1 << 20  # bytes per read when forwarding
_UPSTREAM_WAIT_S = 60.0  # how long a first connection waits for the worker to listen
# accept() errors that pass: wait and accept again
_TRANSIENT = (errno.EINTR, errno.ECONNABORTED, errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EPROTO)

_libc = ctypes.CDLL(None, use_errno=True)


class Unavailable(Exception):
    """This machine does not let us make the namespaces."""


def die_with_parent(parent: int, signum: int = signal.SIGTERM) -> None:
    """Ask the kernel for ``signum`` when our parent dies; leave now if the
    parent ``parent`` is already gone (it died before the request)."""
    _libc.prctl(_PR_SET_PDEATHSIG, signum)
    if os.getppid() != parent:
        os._exit(1)


def listen(spec: str) -> socket.socket:
    """A listening socket for ``tcp:HOST:PORT`` or ``unix:PATH``."""
    kind, _, where = spec.partition(":")
    if kind == "unix":
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)  # owner only, whatever the folder
        try:
            server.bind(where)
        finally:
            os.umask(old)
    elif kind == "tcp":
        host, _, port = where.rpartition(":")
        host = host.strip("[]")
        family, _, _, _, address = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        server = socket.socket(family, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(address)
    else:
        raise ValueError(f"unknown listening address {spec!r}")
    server.listen(64)
    return server


def _unshare(flags: int) -> None:
    fake = os.environ.get(FAKE_UNSHARE_ERRNO)
    if fake:
        raise Unavailable(f"unshare: {os.strerror(getattr(errno, fake))} (simulated by {FAKE_UNSHARE_ERRNO})")
    if _libc.unshare(flags) != 0:
        number = ctypes.get_errno()
        hint = {
            errno.EPERM: " (user namespaces are blocked here, e.g. by a container's seccomp profile "
            "or by kernel.apparmor_restrict_unprivileged_userns)",
            errno.ENOSPC: " (user.max_user_namespaces is reached or 0)",
            errno.EINVAL: " (this kernel lacks user or network namespaces)",
        }.get(number, "")
        raise Unavailable(f"unshare: {os.strerror(number)}{hint}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def enter_private_network() -> None:
    """Move this (single-threaded) process into a new user and network
    namespace, as the same uid and gid, with its loopback interface up."""
    uid, gid = os.geteuid(), os.getegid()
    _unshare(CLONE_NEWUSER | CLONE_NEWNET)
    try:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    except OSError as error:
        raise Unavailable(f"cannot map our uid into the new user namespace: {error.strerror}") from None
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            request = fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, struct.pack(_IFREQ, b"lo", 0))
            flags = struct.unpack(_IFREQ, request)[1]
            fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack(_IFREQ, b"lo", flags | _IFF_UP))
    except OSError as error:
        raise Unavailable(f"cannot bring up the loopback interface of the new namespace: {error.strerror}") from None


def _inner_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the relay ------------------------------------------------------------


def _pump(source: socket.socket, sink: socket.socket, done) -> None:
    """Copy bytes from ``source`` to ``sink`` until end of stream.  (A
    thread per direction and a 1 MiB buffer: 400 MB each way through the
    relay took no longer than with `os.splice`, measured on 2 cores.)"""
    buffer = bytearray(_BUFFER)
    view = memoryview(buffer)
    try:
        while n := source.recv_into(buffer):
            sink.sendall(view[:n])
        sink.shutdown(socket.SHUT_WR)  # pass the end of stream on
    except OSError:
        # One side broke: end both directions, so the other pump leaves too.
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
    finally:
        done()


def _connect_upstream(port: int, parent: int) -> socket.socket | None:
    """A connection to the worker; the first ones may come before the
    worker listens, so wait for it rather than fail (a client would
    otherwise back off for a second or more before trying again)."""
    deadline = time.monotonic() + _UPSTREAM_WAIT_S
    delay = 0.001
    while True:
        upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            upstream.connect(("127.0.0.1", port))
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return upstream
        except OSError:
            upstream.close()
            if time.monotonic() > deadline or os.getppid() != parent:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.02)


def _serve_connection(client: socket.socket, port: int, parent: int) -> None:
    upstream = _connect_upstream(port, parent)
    if upstream is None:
        client.close()
        return
    if client.family != socket.AF_UNIX:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    left = [2]
    lock = threading.Lock()

    def done():
        with lock:
            left[0] -= 1
            if left[0]:
                return
        client.close()
        upstream.close()

    threading.Thread(target=_pump, args=(upstream, client, done), daemon=True).start()
    _pump(client, upstream, done)


def relay(server: socket.socket, port: int, parent: int) -> None:
    """Forward every connection accepted on ``server`` to the worker at
    ``127.0.0.1:port`` of this namespace, forever."""
    while True:
        try:
            client, _ = server.accept()
        except OSError as error:
            if error.errno in _TRANSIENT:
                time.sleep(0.05)  # out of descriptors or memory: wait, rather than fail the worker
                continue
            raise
        threading.Thread(target=_serve_connection, args=(client, port, parent), daemon=True).start()


def _relay_process(server: socket.socket, port: int, worker: int) -> None:
    """The forked relay: dies with the worker, and ends it if it leaves."""
    die_with_parent(worker, signal.SIGKILL)
    try:
        relay(server, port, worker)
    except BaseException as error:  # noqa: BLE001 - report, then take the worker down
        print(f"fedarena relay: {error!r}", file=sys.stderr, flush=True)
    finally:
        if os.getppid() == worker:
            os.kill(worker, signal.SIGTERM)
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m fedarena.core.execution.backends.isolation", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="only say whether this machine allows the namespaces (exit 0) or not (exit 3)")
    parser.add_argument("--listen", help="tcp:HOST:PORT or unix:PATH")
    parser.add_argument("--status-fd", type=int)
    parser.add_argument("--parent", type=int, help="die when this process (our parent) dies")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- worker_binary [ARGS]")
    args = parser.parse_args(argv)
    if args.check:
        try:
            enter_private_network()
        except Unavailable as error:
            print(f"unavailable: {error}")
            return 3
        print("available")
        return 0
    if args.listen is None or args.status_fd is None or not args.command:
        parser.error("--listen, --status-fd and a command are required")
    if args.parent:
        die_with_parent(args.parent)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    status = os.fdopen(args.status_fd, "w")

    def report(line: str, code: int | None = None) -> None:
        status.write(line + "\n")
        status.close()
        if code is not None:
            sys.exit(code)

    try:
        server = listen(args.listen)
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or error
        report(f"error cannot listen on {args.listen.partition(':')[2]}: {reason}", 2)
    try:
        enter_private_network()
    except Unavailable as error:
        report(f"unavailable {error}", 3)
    port = _inner_port()
    bound = server.getsockname()[1] if server.family != socket.AF_UNIX else 0
    worker = os.getpid()
    sys.stdout.flush()
    sys.stderr.flush()
    relay_pid = os.fork()
    if relay_pid == 0:
        status.close()
        _relay_process(server, port, worker)
    server.close()
    report(f"isolated {relay_pid} {port} {bound}")
    os.execv(command[0], [*command, f"--port={port}"])


if __name__ == "__main__":
    sys.exit(main())
