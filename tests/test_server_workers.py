"""`canvass serve --workers N`: N processes on one port, supervised; a real Redis, real processes."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
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

from engine.redis.store import FLEET_TTL, Store, metrics_key
from engine.runtime.workers import worker_argv
from engine.tools.cli import build_parser

FLOWS = REPO / "tests" / "flows" / "server"
OLD_REASON = "What is the main reason for your score?"
NEW_REASON = "Why that score?"


def request(url: str, form: dict | None = None, timeout: float = 10) -> tuple[int, object]:
    """(status, body: JSON or text) of one request on a connection of its own."""
    data = urlencode(form).encode() if form is not None else None
    try:
        with urllib.request.urlopen(url, data=data, timeout=timeout) as response:
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
        self.log = tmp_path / f"serve-{self.port}.log"
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
        if workers == 1:  # no supervisor: the process serves itself
            return self.wait_for(lambda: self.pids_answering({self.process.pid}, 1), "the server answering")

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
                                      "--insecure", "--access-log", "--workers", "3", "--credits", "c.csv",
                                      "--contact-frequency", "1/7d"])
    argv = worker_argv(args)
    assert build_parser().parse_args(argv[3:]) == build_parser().parse_args(
        ["serve", "--flows", "f", "--host", "0.0.0.0", "--port", "9", "--watch", "--insecure", "--access-log",
         "--workers", "1", "--reuse-port", "--credits", "c.csv", "--contact-frequency", "1/7d"])
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]
    options = {action.dest for action in serve._actions} - {"help"}
    # A new serve option must be passed on in worker_argv (and added to the lists above).
    assert options == {"flows", "host", "port", "watch", "insecure", "access_log", "workers", "reuse_port",
                       "credits", "contact_frequency"}


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


# ---------------------------------------------------------------- reloads reach every worker


def copy_flows(tmp_path: Path, name: str = "flows") -> Path:
    return Path(shutil.copytree(FLOWS, tmp_path / name))


def edit_reason(flows: Path) -> None:
    path = flows / "feedback.yaml"
    path.write_text(path.read_text().replace(OLD_REASON, NEW_REASON))


def live_flows(server: Served, tries: int) -> list[dict]:
    """/admin/flows as `tries` answers, each on a connection of its own (so from any worker)."""
    answers = []
    for _ in range(tries):
        status, body = request(server.base + "/admin/flows")
        assert status == 200, body
        answers.append(body)
    return answers


def feedback_version(described: dict) -> str:
    return next(f["version"] for f in described["flows"] if f["id"] == "feedback")


def reason_asked(server: Served, phone: str) -> str:
    """Start a session with the access code, answer the score: the next question's text."""
    replies = []
    for n, text in enumerate(("@feed", "3")):
        form = {"MessageSid": f"SM{int(phone[1:]):024x}{n:08x}", "From": phone, "To": "+15550000000", "Body": text}
        status, body = request(server.base + "/twilio/messages", form)
        assert status == 200, body
        replies.append(body)
    return replies[-1]


def reload(server: Served, timeout: float = 10) -> tuple[int, dict]:
    return request(server.base + "/admin/reload", {}, timeout=timeout)


def test_a_reload_through_the_api_reaches_every_worker_before_it_answers(served, tmp_path):
    flows = copy_flows(tmp_path)
    server = served(flows=flows, workers=3)
    pids = server.ready(3)
    [before] = {feedback_version(d) for d in live_flows(server, 6)}
    edit_reason(flows)
    status, body = reload(server)
    assert status == 200, body
    assert {int(w.split(":")[1]) for w in body["workers"]["confirmed"]} == pids
    assert body["workers"]["unconfirmed"] == [] and body["workers"]["refused"] == []
    answers = live_flows(server, 24)
    assert {(feedback_version(d), d["generation"]) for d in answers} == {(feedback_version(body), body["generation"])}
    assert feedback_version(answers[0]) != before
    assert len({d["worker"] for d in answers}) > 1  # answered by several workers
    reasons = [reason_asked(server, f"+1555124{n:04d}") for n in range(30)]
    assert sum(NEW_REASON in r for r in reasons) == 30, reasons
    assert server.stop() == 0


def test_a_reload_reaches_another_server_sharing_the_redis_from_redis_not_its_disk(served, tmp_path):
    flows_a, flows_b = copy_flows(tmp_path, "a"), copy_flows(tmp_path, "b")
    a, b = served(flows=flows_a, workers=2), served(flows=flows_b, workers=1)
    a.ready(2)
    b.ready(1)
    edit_reason(flows_a)  # b's files stay as they were
    status, body = reload(a)
    assert status == 200, body
    assert len(body["workers"]["confirmed"]) == 3
    [seen] = live_flows(b, 1)
    assert seen["generation"] == body["generation"]
    assert {w["generation"] for w in seen["workers"]} == {body["generation"]} and len(seen["workers"]) == 3
    assert NEW_REASON in reason_asked(b, "+15551250001")
    assert a.stop() == 0 and b.stop() == 0


def test_a_bad_flow_on_reload_leaves_every_worker_on_the_old_version(served, tmp_path):
    flows = copy_flows(tmp_path)
    server = served(flows=flows, workers=3)
    server.ready(3)
    before = {(feedback_version(d), d["generation"]) for d in live_flows(server, 12)}
    path = flows / "feedback.yaml"
    path.write_text(path.read_text().replace(OLD_REASON, NEW_REASON).replace("type: nps", "type: nps\n    colour: blue"))
    status, body = reload(server)
    assert status == 422 and body["error"] == "flow_errors" and f"{path}:" in body["report"]
    assert {(feedback_version(d), d["generation"]) for d in live_flows(server, 24)} == before
    assert all(OLD_REASON in reason_asked(server, f"+1555126{n:04d}") for n in range(12))
    assert server.stop() == 0


def test_a_live_set_a_worker_cannot_build_is_refused_and_reported_and_the_old_one_stays(served, tmp_path, redis_url):
    server = served(flows=copy_flows(tmp_path), workers=2)
    pids = server.ready(2)
    [before] = {feedback_version(d) for d in live_flows(server, 6)}

    async def announce_a_version_never_stored() -> int:
        store = await Store.open(redis_url)
        try:
            generation, _ = await store.announce_live({"feedback": "0" * 16}, "test")
            return generation
        finally:
            await store.aclose()

    generation = asyncio.run(announce_a_version_never_stored())

    def every_worker_refused():
        [described] = live_flows(server, 1)
        refused = [w for w in described["workers"] if w.get("refused") == generation]
        return described if len(refused) == 2 else None

    described = server.wait_for(every_worker_refused, "both workers refusing the set")
    assert all("E804" in w["error"] and "is not stored in Redis" in w["error"] for w in described["workers"])
    assert {feedback_version(d) for d in live_flows(server, 12)} == {before}
    assert OLD_REASON in reason_asked(server, "+15551270001")
    assert "do not compile here" in server.log.read_text()
    status, body = reload(server)  # a reload from disk puts every worker back on one set
    assert status == 200 and {int(w.split(":")[1]) for w in body["workers"]["confirmed"]} == pids
    assert server.stop() == 0


def kept_alive_to_another_worker(server: Served, pids: set[int], stopped: int) -> http.client.HTTPConnection:
    """A keep-alive connection that a worker other than `stopped` answers (the kernel picks the
    worker when a connection opens, so a request on it cannot land on the stopped one)."""
    for _ in range(40):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request("GET", "/healthz")
        if json.loads(connection.getresponse().read())["pid"] != stopped:
            return connection
        connection.close()
    pytest.fail(f"no worker but {stopped} of {pids} answered")


def test_a_reload_answers_503_naming_a_worker_that_does_not_confirm(served, tmp_path):
    flows = copy_flows(tmp_path)
    server = served(flows=flows, workers=3)
    pids = server.ready(3)
    stopped = max(pids)
    connection = kept_alive_to_another_worker(server, pids, stopped)
    os.kill(stopped, signal.SIGSTOP)
    try:
        edit_reason(flows)
        started = time.monotonic()
        connection.request("POST", "/admin/reload")
        response = connection.getresponse()
        status, body = response.status, json.loads(response.read())
        waited = time.monotonic() - started
        assert status == 503, body
        assert body["error"] == "reload_incomplete"
        assert [int(w.split(":")[1]) for w in body["workers"]["unconfirmed"]] == [stopped]
        assert {int(w.split(":")[1]) for w in body["workers"]["confirmed"]} == pids - {stopped}
        assert str(stopped) in body["message"]
        assert 4.5 < waited < 8, waited
    finally:
        os.kill(stopped, signal.SIGCONT)
        connection.close()
    new = feedback_version(body)

    def every_worker_on_it():
        answers = live_flows(server, 30)
        return {feedback_version(d) for d in answers} == {new} and len({d["worker"] for d in answers}) == 3

    server.wait_for(every_worker_on_it, "the resumed worker taking the reload")
    assert server.stop() == 0


def test_metrics_of_every_worker_from_any_worker_labelled_by_pid(served):
    server = served(workers=2)
    pids = server.ready(2)
    for n in range(6):
        reason_asked(server, f"+1555128{n:04d}")

    def counted():
        status, text = request(server.base + "/metrics")
        found = {int(pid): float(value) for pid, value in
                 re.findall(r'canvass_messages_in_total\{channel="sms",worker="(\d+)"\} (\S+)', text)}
        return found if set(found) == pids and sum(found.values()) == 12 else None

    server.wait_for(counted, "/metrics counting every worker's messages")
    assert server.stop() == 0


def test_metrics_of_a_worker_killed_before_it_dropped_them_are_forgotten(redis_url):
    async def stored_then_read() -> tuple[dict[str, str], list[str]]:
        store = await Store.open(redis_url)
        try:
            await store.save_metrics("host:1", "101", "[]", at=1000.0)  # killed long ago
            await store.save_metrics("host:1", "102", "[]", at=1000.0 + FLEET_TTL + 5)
            fresh = await store.all_metrics("host:1", now=1000.0 + FLEET_TTL + 6)
            return fresh, await store.redis.hkeys(metrics_key("host:1"))
        finally:
            await store.aclose()

    fresh, kept = asyncio.run(stored_then_read())
    assert fresh == {"102": "[]"} and kept == ["102"]
