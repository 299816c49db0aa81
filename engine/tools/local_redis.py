"""A redis-server on 127.0.0.1 with the shipped configuration: the command line every Redis
Canvass starts uses (./dev serve, the tests, bench/run), and a private one for a run of
`canvass test --channel web`, its data in a temporary folder."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REDIS_CONF = Path(__file__).resolve().parents[1] / "redis" / "redis.conf"
START_TIMEOUT = 20.0  # seconds: an empty Redis answers at once


class RedisMissing(Exception):
    """redis-server is not installed, or did not start."""


def redis_command(port: int, data_dir: Path, *extra: str) -> list[str]:
    """The redis-server command line with the shipped configuration (engine/redis/redis.conf),
    on 127.0.0.1:port with its data in data_dir; `extra` options override the file's.
    Every Redis Canvass starts (./dev serve, the tests, bench/run) starts from this."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisMissing("redis-server is not installed: install Debian's redis-server package "
                           "(./dev does)")
    return [binary, str(REDIS_CONF), "--port", str(port), "--dir", str(data_dir), *extra]


def redis_answers(port: int) -> bool:
    """True once a Redis on 127.0.0.1:port answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class PrivateRedis:
    """A throwaway redis-server: a free port, its data in a temporary folder, nothing kept
    (no AOF, no snapshot); stopped by its own pid."""

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="canvass-redis-"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = self.directory / "redis.log"
        argv = redis_command(self.port, self.directory, "--appendonly", "no", "--save", "", "--logfile", str(log))
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not redis_answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                said = log.read_text(errors="replace")[-1000:] if log.exists() else ""
                raise RedisMissing(f"redis-server did not start on port {self.port}:\n{said}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
