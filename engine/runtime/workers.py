"""`canvass serve --workers N`: N server processes sharing one port, one per core.

One server process runs on one core (asyncio). Each worker here is a `canvass serve` of its
own, with the same options and environment, listening with SO_REUSEPORT so the kernel
spreads connections over them. Workers share nothing but Redis, which already applies each
conversation's messages one after the other and leases timers to one worker at a time
(engine.redis.store); a reload in one worker reaches the others through Redis too
(engine.runtime.fleet), as it reaches other servers sharing that Redis. Each worker's
metrics are stored under `server_name` so that any worker's /metrics shows them all.

The supervisor forwards SIGHUP (reload the flows) and SIGTERM/SIGINT (stop gracefully) to
every worker and restarts a worker that dies. A worker that exits with an error status
while starting (flows with errors, the port taken) would fail the same way again: then
every worker is stopped and its exit status is the supervisor's. So is a worker that keeps
dying (more than RESTARTS times in RESTART_WINDOW).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

log = logging.getLogger("canvass.workers")

STARTUP = 15.0  # seconds: a worker that exits sooner than this failed to start
RESTARTS = 5  # restarts allowed within RESTART_WINDOW before the supervisor gives up
RESTART_WINDOW = 60.0
STOP_TIMEOUT = 40.0  # seconds a worker has to finish its requests (aiohttp allows 30)
POLL = 0.2


def worker_argv(args) -> list[str]:
    """The command line of one worker: the supervisor's `serve` options, one process, SO_REUSEPORT."""
    argv = [sys.executable, "-m", "engine.tools.cli", "serve", "--flows", str(args.flows),
            "--host", args.host, "--port", str(args.port), "--workers", "1", "--reuse-port"]
    for flag in ("watch", "insecure", "access_log"):
        if getattr(args, flag):
            argv.append("--" + flag.replace("_", "-"))
    if getattr(args, "credits", None):
        argv += ["--credits", args.credits]
    if getattr(args, "contact_frequency", None):
        argv += ["--contact-frequency", args.contact_frequency]
    return argv


@dataclass
class _Worker:
    process: subprocess.Popen
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(self, argv: list[str], count: int):
        self.argv, self.count = argv, count
        self.workers: list[_Worker] = []
        self.stopping = False
        self.restarts: list[float] = []

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hangup)
        self.workers = [self._start() for _ in range(self.count)]
        log.info("supervising %d workers: %s", self.count, ", ".join(str(w.process.pid) for w in self.workers))
        status = 0
        while not self.stopping:
            time.sleep(POLL)
            for index, worker in enumerate(self.workers):
                code = worker.process.poll()
                if code is None or self.stopping:
                    continue
                failure = self._failure(worker, code)
                if failure is not None:
                    status = failure
                    self.stopping = True
                    break
                log.warning("worker %d exited (status %s); starting another", worker.process.pid, code)
                self.workers[index] = self._start()
        self._stop_all()
        return status

    def _failure(self, worker: _Worker, code: int) -> int | None:
        """The exit status to stop with, or None when the worker should just be replaced."""
        now = time.monotonic()
        if code > 0 and now - worker.started < STARTUP:  # an error status of its own, not a kill
            log.error("worker %d failed to start (status %d): stopping", worker.process.pid, code)
            return code
        self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW] + [now]
        if len(self.restarts) > RESTARTS:
            log.error("workers died %d times within %.0f s: stopping", len(self.restarts), RESTART_WINDOW)
            return code or 1
        return None

    def _start(self) -> _Worker:
        return _Worker(subprocess.Popen(self.argv))  # in our process group: a Ctrl-C reaches all

    def _on_stop(self, signum, frame) -> None:
        self.stopping = True

    def _on_hangup(self, signum, frame) -> None:
        for worker in self.workers:
            _signal(worker.process, signal.SIGHUP)

    def _stop_all(self) -> None:
        for worker in self.workers:
            _signal(worker.process, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for worker in self.workers:
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker %d did not stop within %.0f s: killed", worker.process.pid, STOP_TIMEOUT)
                worker.process.kill()
                worker.process.wait()


def _signal(process: subprocess.Popen, signum: int) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):  # it exited meanwhile
            os.kill(process.pid, signum)


async def exit_with_supervisor(app) -> AsyncIterator[None]:
    """A worker's cleanup context: stop gracefully when the supervisor is gone (killed with
    SIGKILL, so it could not stop us), rather than serve on unsupervised."""
    supervisor = os.getppid()

    async def watch() -> None:
        while os.getppid() == supervisor:
            await asyncio.sleep(1.0)
        log.error("the supervisor (pid %d) is gone: stopping", supervisor)
        os.kill(os.getpid(), signal.SIGTERM)

    task = asyncio.create_task(watch())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def run_workers(args) -> int:
    return Supervisor(worker_argv(args), args.workers).run()


def server_name(supervisor: int) -> str:
    """The name the workers of one supervisor share (their metrics are stored under it)."""
    return f"{socket.gethostname()}:{supervisor}"
