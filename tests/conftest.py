"""Fixtures for the server tests: a real redis-server, a fake Twilio API, a Canvass app and phones.

Everything listens on 127.0.0.1. redis-server comes from Debian's package (./dev installs it);
without it these tests fail with a message saying so rather than being skipped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE_URL, FakeTwilio, Phone
from faults_helpers import CanvassProcess, Records, Texter, write_figures, write_flows
from hypothesis import settings as hypothesis_settings
from postgres import PostgresServer
from redis_cluster import RedisCluster

from engine.records.commands import upgrade as upgrade_records
from engine.redis.cluster import SUMMED
from engine.redis.store import ClusterLayout, Layout
from engine.runtime.settings import Settings
from engine.tools.devserver import RedisMissing, redis_answers, redis_command
from server import ARCHIVER, create_app

# In CI the property tests draw the same examples every run (a red build is then the code's
# doing, not the draw's) and no example fails for being slow on a busy machine.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="module", autouse=True)
def settled_heap():
    """What the earlier test modules left alive is set aside from the collector before each
    module, as `canvass serve` does with what its start-up built (server.tune_collector): by
    the end of the suite this process holds about a million objects, and a full collection
    walking them all stopped the event loop for up to 1.5 s (the suite ran a minute longer).
    Tests with timing in them (timeouts, leases) see the pauses a server sees, not longer."""
    gc.collect()
    gc.freeze()


REPO = Path(__file__).resolve().parents[1]
SERVER_FLOWS = REPO / "tests" / "flows" / "server"
ADMIN_TOKEN = "test-admin-token"
SERVICE_SID = "MG" + "2" * 32
START_TIME = 1_700_000_000.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server process with the shipped configuration, its data in `directory`."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory, self.port = directory, port or free_port()
        self.process: subprocess.Popen | None = None
        self.overrides: tuple[str, ...] = ("--save", "")  # the tests' own choices over the shipped file

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        log = self.directory / "redis.log"
        try:
            argv = redis_command(self.port, self.directory, *self.overrides, "--logfile", str(log))
        except RedisMissing as err:
            pytest.fail(f"{err}, to run the server tests", pytrace=False)
        self.directory.mkdir(parents=True, exist_ok=True)
        stderr = self.directory / "redis.stderr"  # where a bad configuration is reported
        with stderr.open("wb") as errors:
            self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=errors)
        deadline = time.monotonic() + 10
        while not redis_answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                said = "".join(path.read_text(errors="replace")[-2000:] for path in (stderr, log)
                               if path.exists())
                pytest.fail(f"redis-server did not start:\n{said}", pytrace=False)
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


# CANVASS_TEST_REDIS=cluster runs the tests that take `redis_url` on the Redis Cluster below
# (ARCHITECTURE.md, Redis Cluster).
ON_CLUSTER = os.environ.get("CANVASS_TEST_REDIS") == "cluster"
# Where the server keeps each key on the Redis the tests run on (engine.redis.store's layouts)
LAYOUT = ClusterLayout() if ON_CLUSTER else Layout()


@pytest.fixture
def redis_url(request) -> str:
    if ON_CLUSTER:
        return request.getfixturevalue("cluster_url")
    return request.getfixturevalue("one_redis_url")


@pytest.fixture
def one_redis_url(redis_server) -> str:
    """One Redis, emptied, also when the other tests run on a Cluster: for the tests about what
    one Redis node does (a module pins them with a `redis_url` fixture saying why)."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


def is_cluster_node(url: str) -> bool:
    with redis.Redis.from_url(url) as client:
        return bool(client.info("cluster").get("cluster_enabled"))


# what a cluster's masters keep for their replicas (a test of what the data costs leaves it out)
ALSO_SUMMED = frozenset({"mem_total_replication_buffers", "mem_replication_backlog", "mem_clients_slaves"})


class EveryMaster(redis.RedisCluster):
    """redis-py's cluster client, whose KEYS, DBSIZE, MEMORY PURGE and INFO ask every master
    (redis-py asks one node): what a test reads of "the Redis" is then the whole cluster's.
    INFO's sizes are summed, as the server's own client does (engine.redis.cluster)."""

    def keys(self, pattern="*", **kwargs):
        return super().keys(pattern, **{"target_nodes": self.PRIMARIES, **kwargs})

    def dbsize(self, **kwargs) -> int:
        return super().dbsize(**{"target_nodes": self.PRIMARIES, **kwargs})

    def memory_purge(self, **kwargs):
        return super().memory_purge(**{"target_nodes": self.PRIMARIES, **kwargs})

    def info(self, section=None, *args, **kwargs) -> dict:
        if "target_nodes" in kwargs:
            return super().info(section, *args, **kwargs)
        found = super().info(section, *args, target_nodes=self.PRIMARIES, **kwargs).values()
        return {name: sum(node[name] for node in found) if name in SUMMED | ALSO_SUMMED else value
                for name, value in next(iter(found)).items()}


@pytest.fixture
def redis_sync(redis_url):
    client = (EveryMaster if is_cluster_node(redis_url) else redis.Redis).from_url(redis_url, decode_responses=True)
    yield client
    client.close()


class Clock:
    """The app's clock; tests move it forward."""

    def __init__(self, now: float = START_TIME):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake_twilio(aiohttp_server) -> FakeTwilio:
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN)
    server = await aiohttp_server(fake.app())
    fake.base_url = str(server.make_url("")).rstrip("/")
    return fake


@pytest.fixture
def flows_dir(tmp_path) -> Path:
    """A writable copy of tests/flows/server, for tests that edit flows."""
    return Path(shutil.copytree(SERVER_FLOWS, tmp_path / "flows"))


@pytest.fixture(scope="session")
def records_template(tmp_path_factory) -> Path:
    """An upgraded SQLite records database, copied by each test that needs one (faster than
    running the migrations for each)."""
    path = tmp_path_factory.mktemp("records") / "template.db"
    upgrade_records(f"sqlite:///{path}")
    return path


@pytest.fixture
def database_url(records_template, tmp_path) -> str:
    """A fresh SQLite records database at the current schema, for this test alone."""
    target = tmp_path / "canvass.db"
    shutil.copyfile(records_template, target)
    return f"sqlite:///{target}"


@pytest.fixture(scope="session")
def postgres_server():
    server = PostgresServer(free_port())
    server.init()
    server.start()
    yield server
    server.remove()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def records_url(request, records_template, tmp_path) -> str:
    """A fresh records database at the current schema: SQLite, then a real PostgreSQL."""
    if request.param == "sqlite":
        target = tmp_path / "canvass.db"
        shutil.copyfile(records_template, target)
        return f"sqlite:///{target}"
    server = request.getfixturevalue("postgres_server")
    url = server.create_database(f"t{os.urandom(6).hex()}")
    upgrade_records(url)
    return url


@pytest.fixture
def settings(flows_dir, redis_url, fake_twilio, database_url) -> Settings:
    return Settings(flows_dir=flows_dir, redis_url=redis_url, database_url=database_url,
                    account_sid=ACCOUNT_SID,
                    auth_token=AUTH_TOKEN, public_base_url=PUBLIC_BASE_URL, admin_token=ADMIN_TOKEN,
                    api_base_url=fake_twilio.base_url, messaging_service_sid=SERVICE_SID)


@pytest.fixture
def make_client(aiohttp_client, clock):
    """Start a Canvass app (timers sweep only at startup unless `timer_interval` says otherwise)."""
    async def make(settings: Settings, timer_interval: float = 3600.0):
        client = await aiohttp_client(create_app(settings, clock=clock, timer_interval=timer_interval))
        while client.app[ARCHIVER].rounds == 0:  # its first round is over: what a test closes
            await asyncio.sleep(0.005)  # then stays in Redis until the next one
        return client

    return make


@pytest.fixture
async def api(make_client, settings, records_url):
    """A server whose records database is SQLite, then PostgreSQL (`records_url` on the client)."""
    client = await make_client(dataclasses.replace(settings, database_url=records_url))
    client.records_url = records_url
    return client


@pytest.fixture
async def client(make_client, settings):
    return await make_client(settings)


async def eventually(condition, timeout: float = 3.0) -> None:
    """Wait until condition() holds (what a background task does), failing after `timeout`."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


def admin_headers(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def phone(client):
    return Phone(client, "+15551230001")


def pytest_terminal_summary(terminalreporter, config):
    """The fault suite's figures (tests/test_faults.py), when it ran."""
    write_figures(terminalreporter, config)


@pytest.fixture
def canvass(tmp_path, database_url):
    """Start `canvass serve` processes (faults_helpers.CanvassProcess) on a Redis and a records
    database (SQLite unless given), more environment variables and workers as given; every one
    is stopped at the end."""
    flows = write_flows(tmp_path / "flows")
    started: list[CanvassProcess] = []

    def start(redis_url: str, records_url: str = database_url, environment: dict[str, str] | None = None,
              workers: int = 1) -> CanvassProcess:
        Records.url = records_url
        process = CanvassProcess(flows, redis_url, tmp_path / f"canvass-{len(started)}.log", free_port(),
                                 records_url, environment, workers=workers)
        started.append(process)
        process.start()
        return process

    yield start
    for process in started:
        process.stop()
    Records.url = None


@pytest.fixture
def web_flows(flows_dir):
    """The flows directory with the web survey tests' flow (tests/flows/web/webtest.yaml) in it."""
    flow = Path(__file__).parent / "flows" / "web" / "webtest.yaml"
    shutil.copy(flow, flows_dir / flow.name)
    return flows_dir


@pytest.fixture
async def texter():
    """Texters (faults_helpers.Texter) of the fault suites, closed afterwards: make(base_url)."""
    made: list[Texter] = []

    def make(base_url: str) -> Texter:
        made.append(Texter(base_url))
        return made[-1]

    yield make
    for one in made:
        await one.close()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """Three masters with a replica each (tests/redis_cluster.py), for the whole session."""
    cluster = RedisCluster(tmp_path_factory.mktemp("cluster"), RedisServer)
    try:
        cluster.start()
    except RedisMissing as err:
        cluster.stop()
        pytest.fail(f"{err}, to run the cluster tests", pytrace=False)
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster) -> str:
    """The URL of one master of the cluster, whole again (every node revived) and emptied."""
    redis_cluster.heal()
    for port in redis_cluster.masters():
        with redis_cluster.client(port) as client:
            client.flushall()
    return redis_cluster.url
