"""The processes a benchmark runs: redis-server, `canvass serve`, the floor server, each pinned
to a core with taskset so that the server and the load generator never share one."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.tools.devserver import RedisMissing, redis_answers, redis_command

REPO = Path(__file__).resolve().parents[1]
FLOWS = REPO / "bench" / "flows"  # the benchmark survey, served by `canvass serve --flows`
VENV_BIN = Path(sys.executable).parent
START_TIMEOUT = 20.0  # seconds for a process to answer after it is started
TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark cannot run or a run went wrong; the message says what."""


class Pinning:
    """Which cores the server side and the load side run on (None: not pinned, with why)."""

    def __init__(self) -> None:
        self.taskset = shutil.which("taskset")
        cores = sorted(os.sched_getaffinity(0))
        self.note = None
        if self.taskset is None:
            self.server_core = self.load_core = None
            self.note = "taskset not found (util-linux): processes are not pinned, ratios are noisier"
        elif len(cores) < 2:
            self.server_core = self.load_core = None
            self.note = "only one core available: server and load generator share it"
        else:
            self.load_core, self.server_core = cores[0], cores[1]

    def command(self, argv: list[str], core: int | None) -> list[str]:
        if core is None or self.taskset is None:
            return argv
        return [self.taskset, "-c", str(core), *argv]

    def describe(self) -> dict:
        return {"server_core": self.server_core, "load_core": self.load_core, "note": self.note}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14 and 15)


def bench_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: the repository importable, nothing inherited that
    would change what Canvass does (Twilio, Redis and database settings come only from `extra`)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TWILIO_", "CANVASS_", "PUBLIC_BASE_URL", "REDIS_URL", "DATABASE_URL"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


class Process:
    """A child process whose output goes to a log file; stopped by its own pid."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None):
        self.name, self.argv, self.log_path, self.env = name, argv, log, env
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env)

    def check_running(self) -> None:
        if self.process.poll() is not None:
            raise BenchError(f"{self.name} exited with status {self.process.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def redis_server(directory: Path, pinning: Pinning) -> tuple[Process, str]:
    """redis-server with the shipped configuration (AOF, fsync always), its data in `directory`."""
    port = free_port()
    try:
        argv = redis_command(port, directory, "--save", "", "--logfile", "")
    except RedisMissing as err:
        raise BenchError(str(err)) from None
    directory.mkdir(parents=True, exist_ok=True)
    process = Process("redis-server", pinning.command(argv, pinning.load_core), directory / "redis.log")
    process.start()
    url = f"redis://127.0.0.1:{port}/0"
    wait_until_ready(process, lambda: redis_answers(port))
    return process, url


def http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_ready(process: Process, ready) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        process.check_running()
        if time.monotonic() > deadline:
            process.stop()
            raise BenchError(f"{process.name} did not become ready in {START_TIMEOUT:.0f} s:\n"
                             f"{process.log_tail()}")
        time.sleep(0.05)


def start_server(name: str, argv: list[str], port: int, ready_path: str, env: dict[str, str],
                 log: Path, pinning: Pinning) -> Process:
    process = Process(name, pinning.command(argv, pinning.server_core), log, env)
    process.start()
    wait_until_ready(process, lambda: http_ready(f"http://127.0.0.1:{port}{ready_path}"))
    return process


@contextmanager
def pinned_to(core: int | None) -> Iterator[None]:
    """Run this process's own work on `core` (None: anywhere), then let it go anywhere again
    (the processes it starts are pinned by taskset)."""
    saved = os.sched_getaffinity(0)
    if core is not None:
        os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def run_alone(name: str, part: Callable[[Path, Callable[[str], None]], dict]) -> int:
    """`python -m bench.NAME`: one part alone (bench/run runs them all), in a scratch folder,
    its progress on stderr and its figures as JSON on stdout; 1 when it fails."""
    with tempfile.TemporaryDirectory(prefix="canvass-bench-") as workdir:
        try:
            results = part(Path(workdir), lambda text: print(f"  {text}", file=sys.stderr, flush=True))
        except BenchError as err:
            print(f"bench.{name}: {err}", file=sys.stderr)
            return 1
    print(json.dumps(results, indent=2))
    return 0

