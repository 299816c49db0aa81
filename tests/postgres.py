"""A throwaway PostgreSQL cluster for the records tests, from Debian's `postgresql` package.

initdb and pg_ctl from /usr/lib/postgresql/*/bin make a cluster in a temporary folder,
listening on 127.0.0.1 on a free port (and a Unix socket in that folder), trusting local
connections. PostgreSQL refuses to run as root: as root, the cluster belongs to the
`postgres` user the package creates, and its commands run through runuser.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

USER = "canvass"


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    return Path(found[-1]).parent if found else None


class PostgresServer:
    def __init__(self, port: int):
        binaries = _binaries()
        if binaries is None:
            pytest.fail("PostgreSQL is not installed: install Debian's postgresql package "
                        "(./dev does), to run the records tests against PostgreSQL", pytrace=False)
        self.bin, self.port = binaries, port
        self.directory = Path(tempfile.mkdtemp(prefix="canvass-pg-"))
        self.data = self.directory / "data"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.directory, "postgres", "postgres")

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        command = [str(self.bin / argv[0]), *argv[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check,
                              stdin=subprocess.DEVNULL)

    def url(self, database: str = USER) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", USER, "-A", "trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.directory}'\n"
                       # no fsync (a test cluster need not survive the machine crashing), but
                       # every commit is in the WAL before it is acknowledged, so one survives
                       # the server being killed (the fault tests stop it in immediate mode)
                       "fsync = off\nfull_page_writes = off\n"
                       "max_connections = 200\n")

    def start(self) -> None:
        result = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.directory / "log"),
                           "-w", "-t", "60", "start", check=False)
        if result.returncode != 0:
            log = (self.directory / "log").read_text(errors="replace")[-2000:]
            pytest.fail(f"PostgreSQL did not start:\n{result.stderr}\n{log}", pytrace=False)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def create_database(self, name: str) -> str:
        self._run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", "postgres",
                  "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        self.stop("immediate")
        deadline = time.monotonic() + 10
        while (self.data / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(self.directory, ignore_errors=True)
