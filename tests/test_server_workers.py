"""`canvass serve --workers N`: N processes on one port, supervised; a real Redis, real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest
from conftest import REPO, free_port

from engine.runtime.workers import worker_argv
from engine.tools.cli import build_parser

FLOWS = REPO / "tests" / "flows" / "server"


def request(url: str, form: dict | None = None) -> tuple[int, object]:
    """(status, body: JSON or text) of one request on a connection of its own."""
    data = urlencode(form).encode() if form is not None else None
    try:
        with urllib.request.urlopen(url, data=data, timeout=10) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode()
    except OSError:
        return 0, None
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    """Running (a zombie has stopped: only its parent has yet to collect it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Served:
    def __init__(self, redis_url: str, database_url: str, tmp_path: Path, flows: Path = FLOWS,
                 workers: int = 2):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "serve.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TWILIO_", "CANVASS_"))}
        env["REDIS_URL"], env["DATABASE_URL"] = redis_url, database_url
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "engine.tools.cli", "serve", "--flows", str(flows), "--port", str(self.port),
                 "--insecure", "--workers", str(workers)], cwd=REPO, env=env, stdout=log, stderr=log)

    def wait_for(self, condition, what: str, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = condition()
            if value:
                return value
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"{what} did not happen; the server said:\n{self.log.read_text()[-3000:]}")

    def ready(self, workers: int) -> set[int]:
        def all_up():
            pids = children(self.process.pid)
            return pids if len(pids) == workers and self.pids_answering(pids, 40) == pids else None
        return self.wait_for(all_up, f"{workers} workers answering")

    def pids_answering(self, expected: set[int], tries: int) -> set[int]:
        """The workers that answered /healthz, each request on a connection of its own."""
        seen = set()
        for _ in range(tries):
            status, body = request(self.base + "/healthz")
            if status == 200:
                seen.add(body["pid"])
            if seen == expected:
                break
        return seen

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@pytest.fixture
def served(redis_url, database_url, tmp_path):
    started = []

    def start(**kwargs) -> Served:
        started.append(Served(redis_url, database_url, tmp_path, **kwargs))
        return started[-1]

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait()
        for pid in children(server.process.pid):
            os.kill(pid, signal.SIGKILL)  # (none unless a test failed)


def test_every_serve_option_reaches_the_workers():
    args = build_parser().parse_args(["serve", "--flows", "f", "--host", "0.0.0.0", "--port", "9", "--watch",
                                      "--insecure", "--access-log", "--workers", "3"])
    argv = worker_argv(args)
    assert build_parser().parse_args(argv[3:]) == build_parser().parse_args(
        ["serve", "--flows", "f", "--host", "0.0.0.0", "--port", "9", "--watch", "--insecure", "--access-log",
         "--workers", "1", "--reuse-port"])
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    options = {action.dest for action in serve._actions} - {"help"}
    # A new serve option must be passed on in worker_argv (and added to the lists above).
    assert options == {"flows", "host", "port", "watch", "insecure", "access_log", "workers", "reuse_port"}


def test_workers_share_the_port_conversations_stay_exactly_once_and_sigterm_stops_all(served):
    server = served(workers=2)
    workers = server.ready(2)
    phone = "+15551239001"
    replies = []
    for n, text in enumerate(("@feed", "9", "Friendly staff", "1")):
        form = {"MessageSid": f"SM{n:032x}", "From": phone, "To": "+15550000000", "Body": text}
        for _ in range(2):  # each delivered twice, on connections of their own
            status, body = request(server.base + "/twilio/messages", form)
            assert status == 200
        replies.append(body)
    assert "Thanks" in replies[-1]
    status, record = request(server.base + f"/admin/sessions/{phone}")
    assert record["channels"]["sms"]["respondent"]["session"] is None  # complete, once
    assert server.stop() == 0
    assert not children(server.process.pid) and not any(alive(pid) for pid in workers)


def test_a_worker_that_dies_is_replaced_and_sighup_reloads_every_worker(served):
    server = served(workers=2)
    first = server.ready(2)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    def replacement_answering():
        pids = children(server.process.pid)
        return victim not in pids and len(pids) == 2 and server.pids_answering(pids, 40) == pids

    server.wait_for(replacement_answering, "a replacement worker answering")
    server.process.send_signal(signal.SIGHUP)
    server.wait_for(lambda: server.log.read_text().count("reload (SIGHUP)") == 2, "a reload in each worker")
    assert server.stop() == 0


def test_a_worker_that_cannot_start_stops_the_supervisor_with_its_status(served, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.yaml").write_text("survey: bad\nflow:\n  - ask: q1\n    type: nps\n")  # no prompt
    server = served(flows=broken, workers=2)
    assert server.process.wait(timeout=60) == 1
    assert "the flows have errors" in server.log.read_text()
    assert not children(server.process.pid)


def test_workers_stop_when_their_supervisor_is_killed(served):
    server = served(workers=2)
    workers = server.ready(2)
    server.process.kill()
    server.process.wait()
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in workers), server.log.read_text()[-2000:]
