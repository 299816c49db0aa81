"""`python -m engine.tools.devserver` (what `./dev serve` runs): a local Redis plus `canvass serve`.

Starts redis-server with the shipped configuration (engine/redis/redis.conf: AOF on, fsync
always) and its data in ./var/redis, then serves the example surveys in this process in
insecure local mode, and stops Redis on the way out. When REDIS_URL is set, that Redis is
used and none is started. Extra arguments go to `canvass serve` (e.g. --port 9000 --watch).
One ./var/redis has one Redis: a second `./dev serve` is refused (two redis-servers writing
one append-only file would corrupt it) and told how to share the first one's Redis.
The embedded records database (var/canvass.db, SQLite) is brought up to the current schema
first; a DATABASE_URL one is not touched (`canvass serve` says to run `canvass db upgrade`).
"""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from engine.records.commands import upgrade as upgrade_records
from engine.records.database import DEFAULT_SQLITE, database_url
from engine.tools.cli import build_parser
from engine.tools.local_redis import RedisMissing, redis_answers, redis_command

ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = ROOT / "var" / "redis"
REDIS_PORT = 6379
START_TIMEOUT = 120.0  # seconds: Redis answers only once it has loaded its AOF


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _pick_port() -> int:
    if _port_free(REDIS_PORT):
        return REDIS_PORT
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_LOCKS: list = []  # the data folders' lock files, held open while this process runs


def _claim(data_dir: Path, port: int) -> None:
    """Hold data_dir for this process's Redis (on `port`), or exit saying who holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = (data_dir / "dev-serve.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        held = lock.read().strip() or "?"
        lock.close()
        raise SystemExit(
            f"another ./dev serve is running on {data_dir} (its Redis: 127.0.0.1:{held}); stop it, "
            f"or share its Redis: REDIS_URL=redis://127.0.0.1:{held}/0 ./dev serve --port 8081") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{port}\n")
    lock.flush()
    _LOCKS.append(lock)


def start_redis(data_dir: Path = DATA_DIR) -> tuple[subprocess.Popen, int]:
    port = _pick_port()
    _claim(data_dir, port)
    try:
        argv = redis_command(port, data_dir, "--logfile", str(data_dir / "redis.log"))
    except RedisMissing as err:
        raise SystemExit(str(err)) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(argv, start_new_session=True)  # Ctrl-C stops the server first, then Redis
    deadline = time.monotonic() + START_TIMEOUT
    while not redis_answers(port):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"redis-server did not start; see {data_dir / 'redis.log'}")
        time.sleep(0.05)
    return process, port


def stop_redis(process: subprocess.Popen) -> None:
    process.terminate()  # Redis fsyncs the AOF and exits cleanly on SIGTERM
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(["serve", "--flows", str(ROOT / "surveys"), "--insecure",
                                      *(sys.argv[1:] if argv is None else argv)])
    if not os.environ.get("DATABASE_URL"):
        before, after = upgrade_records(database_url(None))
        if before != after:
            print(f"records database {DEFAULT_SQLITE}: schema {before or 'none'} -> {after}", file=sys.stderr)
    if os.environ.get("REDIS_URL"):
        return args.func(args)
    process, port = start_redis()
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    print(f"Redis on 127.0.0.1:{port}, data in {DATA_DIR}", file=sys.stderr)
    try:
        return args.func(args)  # `canvass serve`
    finally:
        stop_redis(process)


if __name__ == "__main__":
    sys.exit(main())
