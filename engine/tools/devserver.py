"""`python -m engine.tools.devserver` (what `./dev serve` runs): a local Redis plus `canvass serve`.

Starts redis-server with the shipped configuration (engine/redis/redis.conf: AOF on, fsync
always) and its data in ./var/redis, then serves the example surveys in this process in
insecure local mode, and stops Redis on the way out. When REDIS_URL is set, that Redis is
used and none is started. Extra arguments go to `canvass serve` (e.g. --port 9000 --watch).
One ./var/redis has one Redis: a second `./dev serve` is refused (two redis-servers writing
one append-only file would corrupt it) and told how to share the first one's Redis; a Redis
that a killed `./dev serve` left running is stopped before a new one starts.
The embedded records database (var/canvass.db, SQLite) is brought up to the current schema
first; a DATABASE_URL one is not touched (`canvass serve` says to run `canvass db upgrade`).
"""

from __future__ import annotations

import fcntl
import os
import signal
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
ORPHAN_STOP = 10.0  # seconds a Redis left by a killed ./dev serve has to stop


def _holder(text: str) -> tuple[str, int | None, int | None]:
    """The lock file's port, ./dev serve's pid and its Redis's pid (as _record wrote them)."""
    port, owner, redis_pid = ([*text.split(), "", "", ""])[:3]
    return port or "?", int(owner) if owner.isdigit() else None, int(redis_pid) if redis_pid.isdigit() else None


def _alive(pid: int | None) -> bool:
    """The process runs (a zombie, killed and not yet reaped by its parent, does not)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # /proc/PID/stat: "pid (name) state ...", the name in parentheses
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _orphaned_redis(data_dir: Path, owner: int | None, redis_pid: int | None) -> bool:
    """The lock's holder is the Redis of a ./dev serve that is gone (killed: it could not stop
    its Redis, which kept the lock it inherited): its ./dev serve is not alive, and it is a
    redis-server working in `data_dir`."""
    if redis_pid is None or _alive(owner) or not _alive(redis_pid):
        return False
    try:
        command = Path(f"/proc/{redis_pid}/cmdline").read_bytes()
        here = Path(os.readlink(f"/proc/{redis_pid}/cwd"))
    except OSError:
        return False
    return b"redis-server" in command and here == data_dir.resolve()


def _stop_orphan(redis_pid: int) -> None:
    os.kill(redis_pid, signal.SIGTERM)  # Redis fsyncs its AOF and exits cleanly
    deadline = time.monotonic() + ORPHAN_STOP
    while _alive(redis_pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _claim(data_dir: Path):
    """Hold data_dir for this process's Redis, or exit saying who holds it. The lock is held by
    ./dev serve and by its Redis (which inherits it), so a Redis that a killed ./dev serve left
    running still holds it: that one is stopped first, rather than a second Redis started on
    its files."""
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = (data_dir / "dev-serve.lock").open("a+")
    for first in (True, False):
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            lock.seek(0)
            port, owner, redis_pid = _holder(lock.read())
            if first and _orphaned_redis(data_dir, owner, redis_pid):
                print(f"stopping the Redis (pid {redis_pid}, 127.0.0.1:{port}) that a killed ./dev serve "
                      f"left running on {data_dir}", file=sys.stderr)
                _stop_orphan(redis_pid)
                continue
            lock.close()
            raise SystemExit(
                f"another ./dev serve is running on {data_dir} (its Redis: 127.0.0.1:{port}); stop it, "
                f"or share its Redis: REDIS_URL=redis://127.0.0.1:{port}/0 ./dev serve --port 8081") from None
    _LOCKS.append(lock)
    return lock


def _record(lock, port: int, redis_pid: int | None = None) -> None:
    """Say in the lock file who holds it: the port, this process, its Redis."""
    lock.seek(0)
    lock.truncate()
    lock.write(f"{port} {os.getpid()} {redis_pid or ''}\n")
    lock.flush()


def start_redis(data_dir: Path = DATA_DIR) -> tuple[subprocess.Popen, int]:
    lock = _claim(data_dir)
    port = _pick_port()
    _record(lock, port)
    try:
        argv = redis_command(port, data_dir, "--logfile", str(data_dir / "redis.log"))
    except RedisMissing as err:
        raise SystemExit(str(err)) from None
    data_dir.mkdir(parents=True, exist_ok=True)
    # its own session: Ctrl-C stops the server first, then Redis; the lock passed on to it
    process = subprocess.Popen(argv, start_new_session=True, pass_fds=(lock.fileno(),))
    _record(lock, port, process.pid)
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
