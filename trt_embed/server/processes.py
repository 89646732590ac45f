"""`serve --processes N`: N server processes on one listening socket, which this (parent) process binds.

The parent does everything that can fail before serving (option checks, export, the port), binds the socket, then
starts N children with multiprocessing's "spawn" context: fresh interpreters that inherit nothing of the parent's
state (no CUDA context, no loaded engine). Each loads its own runtimes; once all have, they serve the shared socket
together (connections that came earlier wait in its backlog), each under the same `Draining` uvicorn server as a
single process; the kernel spreads connections over them. The parent watches:
a child that fails to start, or dies while serving, stops the others and `serve` exits non-zero (no restart:
the supervisor above, e.g. Kubernetes, restarts the whole server); SIGTERM/SIGINT is passed on to every child,
each drains as one server does, and the parent exits 0 once all have stopped cleanly."""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection, wait
from multiprocessing.context import SpawnProcess
from types import FrameType
from typing import Any, NoReturn

from trt_embed.errors import ServerError, TrtEmbedError
from trt_embed.server.main import ServePlan, bind, load_registry, run_server, serve_plan

log = logging.getLogger("trt_embed.server")
BACKLOG = 2048  # uvicorn's default
STOP_MARGIN = 30.0  # seconds past --shutdown-delay + --drain-seconds before a child that has not stopped is killed
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"  # the CLI's


def serve_processes(args: argparse.Namespace, count: int) -> int:
    """`serve` with `count` server processes; returns the exit status, raises the error `serve` reports."""
    sock = bind(args.host, args.port)  # the port is held from here on (refusing connections until it listens)
    with sock:
        plan = serve_plan(args)
        sock.listen(BACKLOG)
        with metrics_dir():
            return Supervisor(plan, sock, count).run()


@contextlib.contextmanager
def metrics_dir() -> Iterator[str]:
    """A fresh private PROMETHEUS_MULTIPROC_DIR, in the environment the children start with (prometheus-client
    reads it when it is imported); removed, and the environment restored, afterwards."""
    path = tempfile.mkdtemp(prefix="trt-embed-metrics-")
    saved = os.environ.get(METRICS_DIR)
    os.environ[METRICS_DIR] = path
    try:
        yield path
    finally:
        if saved is None:
            os.environ.pop(METRICS_DIR, None)
        else:
            os.environ[METRICS_DIR] = saved
        shutil.rmtree(path, ignore_errors=True)


class Supervisor:
    """Starts `count` server processes on `sock`, waits until all serve, and stops them all when one fails or
    this process is asked to stop."""

    def __init__(self, plan: ServePlan, sock: socket.socket, count: int) -> None:
        self.plan = plan
        self.sock = sock
        self.count = count
        self.children: list[tuple[SpawnProcess, Connection]] = []
        self.signals: list[int] = []

    def on_signal(self, sig: int, frame: FrameType | None) -> None:
        self.signals.append(sig)

    def run(self) -> int:
        handlers = {sig: signal.signal(sig, self.on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        clean = False
        try:
            self.start()
            if self.started():
                host, port = self.sock.getsockname()[:2]
                # The children hold the socket now: once the last stops listening (draining), new connections are
                # refused at once, as with one process, instead of waiting in a backlog nobody reads.
                self.sock.close()
                pids = ", ".join(str(p.pid) for p, _ in self.children)
                log.info("serving on %s:%d from %d processes (pids %s)", host, port, self.count, pids)
                self.watch()
        finally:
            clean = self.stop()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
        return 0 if clean else 1

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        level = logging.getLogger("trt_embed").getEffectiveLevel()
        for n in range(self.count):
            mine, theirs = context.Pipe()
            process = context.Process(
                target=child_main, args=(self.plan, self.sock, theirs, level), name=f"trt-embed-server-{n + 1}"
            )
            process.start()
            theirs.close()
            self.children.append((process, mine))

    def started(self) -> bool:
        """Wait until every child has loaded, then let them all serve; False if a stop signal comes first. A child
        that cannot start raises its error, as one server process would report it."""
        waiting = dict(enumerate(self.children, 1))
        while waiting:
            if self.signals:
                return False
            wait([c for _, c in waiting.values()] + [p.sentinel for p, _ in waiting.values()], timeout=0.5)
            for n, (process, conn) in list(waiting.items()):
                message = receive(conn)
                if message is not None and message[0] == "ready":
                    del waiting[n]
                elif message is not None:
                    raise startup_error(n, self.count, *message[1:])
                elif not process.is_alive():
                    raise ServerError(f"server process {n} of {self.count} {ended(process)} before it served")
        for _, conn in self.children:
            with contextlib.suppress(OSError):  # a child that died since it was ready: `watch` reports it
                conn.send("serve")
        return True

    def watch(self) -> None:
        """Until a stop signal; a child that exits meanwhile (crash, out of memory, killed) raises."""
        while not self.signals:
            wait([p.sentinel for p, _ in self.children], timeout=0.5)
            for n, (process, _) in enumerate(self.children, 1):
                if not process.is_alive():
                    raise ServerError(
                        f"server process {n} of {self.count} (pid {process.pid}) {ended(process)} while serving; "
                        "stopped the others"
                    )

    def stop(self) -> bool:
        """SIGTERM to every child still running (each drains as one server does) and each later signal passed on
        as SIGINT (which hurries them, as a second Ctrl+C does one server); a child still running after
        --shutdown-delay + --drain-seconds + STOP_MARGIN is killed. True if every child exited with status 0."""
        deadline = time.monotonic() + self.plan.shutdown_delay + self.plan.drain_seconds + STOP_MARGIN
        self.signal_children(signal.SIGTERM)
        passed_on = min(len(self.signals), 1)  # the first signal here is the SIGTERM just sent
        while running := [p for p, _ in self.children if p.is_alive()]:
            if len(self.signals) > passed_on:
                passed_on = len(self.signals)
                self.signal_children(signal.SIGINT)
            if time.monotonic() > deadline:
                log.error("server processes %s did not stop in time; killing them", [p.pid for p in running])
                for process in running:
                    process.kill()
            wait([p.sentinel for p in running], timeout=0.5)
        for process, conn in self.children:
            process.join()
            conn.close()
        return all(process.exitcode == 0 for process, _ in self.children)

    def signal_children(self, sig: int) -> None:
        for process, _ in self.children:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, sig)


def ended(process: SpawnProcess) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


def receive(conn: Connection) -> tuple[Any, ...] | None:
    """A child's message, or None if it has sent none (or closed its end)."""
    try:
        return conn.recv() if conn.poll() else None
    except (EOFError, OSError):
        return None


def startup_error(n: int, count: int, kind: str, message: str, module: str | None) -> Exception:
    """A child's start-up failure as the parent raises it: our errors and a missing module as one server process
    would have raised them (so `serve` prints the same `error:` line), anything else named with its process."""
    if kind == "module":
        return ModuleNotFoundError(message, name=module)
    if kind == "error":
        return ServerError(message)
    return ServerError(f"server process {n} of {count} failed to start: {message}")


def failure(exc: BaseException) -> tuple[str, str, str, str | None]:
    """The message a child sends when it cannot start (exceptions themselves do not always pickle)."""
    if isinstance(exc, TrtEmbedError):
        return ("failed", "error", str(exc), None)
    if isinstance(exc, ModuleNotFoundError):
        return ("failed", "module", str(exc), exc.name)
    return ("failed", "other", f"{type(exc).__name__}: {exc}", None)


def child_main(plan: ServePlan, sock: socket.socket, conn: Connection, log_level: int) -> None:
    """A server process: load the runtimes, tell the parent (ready, or why not), then serve the shared socket when
    the parent says every process is ready."""
    os.setpgrp()  # a terminal's Ctrl+C reaches the parent only, which passes one signal on to each child
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, exit_quietly)
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    logging.getLogger("trt_embed").setLevel(log_level)
    serve = threading.Event()
    threading.Thread(target=follow_parent, args=(conn, serve), daemon=True).start()
    try:
        registry = load_registry(plan.names, plan.artifacts, plan.options)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        if not isinstance(exc, TrtEmbedError | ModuleNotFoundError):
            log.exception("server process %d failed to start", os.getpid())
        with contextlib.suppress(OSError):
            conn.send(failure(exc))
        raise SystemExit(1) from None
    conn.send(("ready", os.getpid()))
    serve.wait()  # until every process is ready (a signal ends the wait: the parent stops us, or is gone)
    run_server(plan, registry, [sock])


def exit_quietly(sig: int, frame: FrameType | None) -> NoReturn:
    """A child's SIGTERM/SIGINT outside uvicorn's handling: while loading, stop (nothing was accepted yet);
    after uvicorn's graceful shutdown, which raises the signal again, exit with status 0."""
    raise SystemExit(0)


def follow_parent(conn: Connection, serve: threading.Event) -> None:
    """Set `serve` when the parent says every process is ready; when the parent is gone (its end of the pipe
    closes), SIGTERM this process, which stops it while loading or drains it while serving: no child outlives it."""
    with contextlib.suppress(EOFError, OSError):
        while True:
            if conn.recv() == "serve":
                serve.set()
    os.kill(os.getpid(), signal.SIGTERM)
