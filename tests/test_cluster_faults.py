"""The fault suite on a Redis Cluster (tests/redis_cluster.py: three masters, a replica each):
`canvass serve` with two workers under webhook load while `redis-cli --cluster reshard` moves
1,000 slots, and while a master is killed (SIGKILL) and its replica takes over, with and
without REDIS_WAIT_REPLICAS; what the server exports is compared with what the load sent.
The figures are printed with the fault suite's."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import faults_helpers
import pytest
import redis
from conftest import admin_headers
from faults_helpers import (
    SURVEYS,
    CanvassProcess,
    Figures,
    Load,
    Script,
    alongside,
    answers_lost,
    assert_all_complete_exactly_once,
    commits_lost,
    figures_for,
    scripts,
    until,
)
from redis.cluster import key_slot

from engine.redis.store import ClusterLayout

pytestmark = pytest.mark.slow

LAYOUT = ClusterLayout()
RESPONDENTS = 120
FIRST_NUMBER = 15551260000


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def figures(request) -> Figures:
    return figures_for(request.config, request.node.name.removeprefix("test_"))


@pytest.fixture
def serve(canvass, cluster_url):
    """Start `canvass serve --workers 2` on the cluster (more environment variables given)."""
    return lambda environment=None: canvass(cluster_url, environment=environment, workers=2)


@pytest.fixture
def cluster_sync(cluster_url):
    """A redis-py cluster client, to read what the cluster holds."""
    client = redis.RedisCluster.from_url(cluster_url, decode_responses=True)
    yield client
    client.close()


# ---------------------------------------------------------------- helpers


def respondents(count: int, on_slots: range, share: float = 0.5) -> list[Script]:
    """`count` respondents, about `share` of them in conversations whose shard lies in
    `on_slots` (those a fault hits), the others elsewhere."""
    hit, rest = [], []
    for script in scripts(count * 40, FIRST_NUMBER):
        inside = key_slot(LAYOUT.respondent("sms", script.number).encode()) in on_slots
        pool = hit if inside else rest
        if len(pool) < (round(count * share) if inside else count - round(count * share)):
            pool.append(script)
        if len(hit) + len(rest) == count:
            return hit + rest
    raise AssertionError("not enough respondents on those slots")


def messages_in(all_scripts: list[Script]) -> int:
    return sum(len(script.messages) for script in all_scripts)


def served_slots(redis_cluster, port: int) -> range:
    """The first range of slots master `port` serves."""
    from redis_cluster import _slots
    with redis_cluster.client(port) as client:
        return next(range(start, end + 1) for start, end, master in sorted(_slots(client)) if master == port)


async def exported(load: Load, server: CanvassProcess) -> list[dict]:
    """Every response record the server exports (GET /admin/responses/<survey>, JSON lines),
    its NPS answers as the records keep them (the export writes {score, group})."""
    records = []
    for survey in SURVEYS:
        async with load.texter.session.get(f"{server.url}/admin/responses/{survey}?format=jsonl",
                                           headers=admin_headers(faults_helpers.ADMIN_TOKEN)) as response:
            assert response.status == 200, await response.text()
            text = await response.text()
        for line in text.splitlines():
            record = json.loads(line)
            record["answers"] = {qid: value["score"] if isinstance(value, dict) and "score" in value else value
                                 for qid, value in record["answers"].items()}
            records.append(record)
    return records


async def metric_total(load: Load, server: CanvassProcess, name: str) -> float:
    """A counter summed over the server's workers (each series labelled with its pid), once
    every worker has stored its figures (every 2 s)."""
    await asyncio.sleep(2.5)
    async with load.texter.session.get(server.url + "/metrics") as response:
        text = await response.text()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith((name + " ", name + "{")))


def archived_share(records: list[dict]) -> str:
    """How many of the exported records the archiver had moved to the records database."""
    stored = {r["response_id"] for survey in SURVEYS for r in faults_helpers.archived_records(survey)}
    return f"{sum(r['response_id'] in stored for r in records)} of {len(records)} exported were archived"


def record(figures: Figures, load: Load) -> None:
    deliveries, again, failures = load.count()
    figures.deliveries, figures.redeliveries = deliveries, again
    figures.notes += [f"{count} answered {status or 'nothing'}" for status, count in sorted(
        failures.items(), key=lambda item: str(item[0]))]


# ---------------------------------------------------------------- a reshard under load


async def test_a_reshard_of_1000_slots_under_webhook_load_loses_and_doubles_nothing(
        serve, redis_cluster, cluster_sync, texter, figures):
    source = redis_cluster.master_of_slot(0)
    target = next(port for port in redis_cluster.masters() if port != source)
    moving = served_slots(redis_cluster, source)[:1000]  # redis-cli takes a master's lowest slots
    server = serve()
    everyone = respondents(RESPONDENTS, moving)
    load = Load(texter(server.url), everyone, pause=0.6)

    async def reshard() -> None:
        await until(lambda: load.acked >= 0.15 * messages_in(everyone))
        before, started = load.acked, time.monotonic()
        await asyncio.to_thread(redis_cluster.reshard, source, target, 1000)
        figures.notes.append(f"1000 slots moved in {time.monotonic() - started:.1f}s, "
                             f"{load.acked - before} of {messages_in(everyone)} messages answered meanwhile")
        assert load.acked < messages_in(everyone)  # the load was still under way

    await alongside(load, reshard(), timeout=100)
    assert all(redis_cluster.master_of_slot(slot) == target for slot in (moving[0], moving[-1]))
    record(figures, load)
    figures.duplicates = int(await metric_total(load, server, "canvass_duplicate_webhooks_total"))
    figures.commits_lost = commits_lost(cluster_sync, everyone, LAYOUT)
    figures.answers_lost = answers_lost(cluster_sync, everyone, LAYOUT)
    records = await exported(load, server)
    figures.notes.append(archived_share(records))
    assert figures.commits_lost == 0 and figures.answers_lost == 0
    assert_all_complete_exactly_once(cluster_sync, everyone, LAYOUT, records)


# ---------------------------------------------------------------- a master killed under load


@pytest.mark.parametrize("wait", [0, 1], ids=["without-WAIT", "with-WAIT"])
async def test_a_master_killed_under_webhook_load(serve, redis_cluster, cluster_sync, texter, figures, wait):
    """SIGKILL a master mid-load; its replica takes over. Counted: the messages answered with a
    200 whose commit the promoted replica does not hold, and the answers so lost. With
    REDIS_WAIT_REPLICAS=1 none may be: every 200 waited for the replica. The killed node is
    started again once its replica has taken over (it rejoins as the new master's replica):
    until then, with WAIT, the new master has no replica to wait for and its slots answer 503."""
    victim = redis_cluster.master_of_slot(0)
    server = serve({"REDIS_WAIT_REPLICAS": str(wait), "REDIS_WAIT_TIMEOUT_MS": "200"})
    everyone = respondents(RESPONDENTS, served_slots(redis_cluster, victim), share=0.5)
    load = Load(texter(server.url), everyone, count_divergence=True, pause=0.4)

    async def kill_then_revive() -> None:
        await until(lambda: load.acked >= 0.3 * messages_in(everyone))
        started = time.monotonic()
        await asyncio.to_thread(redis_cluster.kill_master, victim)
        figures.kills += 1
        took_over = time.monotonic() - started
        await asyncio.to_thread(redis_cluster.revive)
        figures.notes += [f"replica took over in {took_over:.1f}s, old master back as its replica "
                          f"{time.monotonic() - started:.1f}s after the kill"]

    await alongside(load, kill_then_revive(), timeout=100)
    record(figures, load)
    figures.commits_lost = commits_lost(cluster_sync, everyone, LAYOUT)
    figures.answers_lost = answers_lost(cluster_sync, everyone, LAYOUT)
    figures.notes.append(f"REDIS_WAIT_REPLICAS={wait}: {len(load.diverged)} respondents answered out of "
                         "step after a loss")
    intact = [script for script in everyone if script.number not in load.diverged
              and commits_lost(cluster_sync, [script], LAYOUT) == 0]
    records = [r for r in await exported(load, server) if r["phone"] in {s.number for s in intact}]
    figures.notes.append(archived_share(records))
    if wait:
        assert figures.commits_lost == 0 and figures.answers_lost == 0 and not load.diverged
    if len(intact) == len(everyone):
        assert_all_complete_exactly_once(cluster_sync, everyone, LAYOUT, records)
    else:  # those who lost an acknowledged commit could not finish: the others, once each
        assert sorted(r["phone"] for r in records if r["status"] == "complete") == sorted(s.number for s in intact)


# ---------------------------------------------------------------- what WAIT does, and costs


async def test_with_wait_a_commit_no_replica_holds_is_a_503_and_its_redelivery_gets_the_same_replies(
        serve, redis_cluster, cluster_sync, texter, figures):
    server = serve({"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "100"})
    [script] = scripts(1, FIRST_NUMBER + 50_000)
    load = Load(texter(server.url), [script])
    await load.run(upto=2)  # the access code and the first answer
    master = redis_cluster.master_of_slot(key_slot(LAYOUT.respondent("sms", script.number).encode()))
    replica_port = next(n["port"] for n in redis_cluster._nodes_view() if n["master"] == redis_cluster.node_id(master))
    replica = next(node for node in redis_cluster.nodes if node.port == replica_port)
    replica.process.send_signal(signal.SIGSTOP)  # it receives nothing, so acknowledges nothing
    try:
        started = time.monotonic()
        assert await load.deliver(script, script.messages[2]) == 503
        answered_in = time.monotonic() - started
        assert commits_lost(cluster_sync, [script], LAYOUT) == 0  # (no 200 yet: nothing to lose)
        assert respondent_answers(cluster_sync, script) == 2  # but the commit is on the master
    finally:
        replica.process.send_signal(signal.SIGCONT)
    await load.run()  # Twilio's redelivery, answered from the commit once the replica has it
    record(figures, load)
    figures.duplicates = int(await metric_total(load, server, "canvass_duplicate_webhooks_total"))
    figures.commits_lost = commits_lost(cluster_sync, [script], LAYOUT)
    figures.answers_lost = answers_lost(cluster_sync, [script], LAYOUT)
    figures.notes.append(f"the 503 came {answered_in:.2f}s after the message")
    assert figures.duplicates == 1 and figures.redeliveries == 1
    assert answered_in < 1.0
    assert_all_complete_exactly_once(cluster_sync, [script], LAYOUT, await exported(load, server))


def respondent_answers(cluster_sync, script: Script) -> int:
    respondent = faults_helpers.respondent_of(cluster_sync, script, LAYOUT)
    return len(respondent.session.answers) if respondent and respondent.session else 0


THROUGHPUT_RESPONDENTS = 100
ROUNDS = 2


async def test_what_wait_costs_in_webhook_throughput(serve, texter, figures):
    """The same bounded load (respondents all texting at once, each message as soon as the last
    was answered) against a server without WAIT and one with REDIS_WAIT_REPLICAS=1, in turns
    (the cores are shared: each figure is the sum of its rounds)."""
    servers = {0: serve(), 1: serve({"REDIS_WAIT_REPLICAS": "1"})}
    answered, seconds = {0: 0, 1: 0}, {0: 0.0, 1: 0.0}
    first = FIRST_NUMBER + 100_000
    for _ in range(ROUNDS):
        for wait, server in servers.items():
            everyone = scripts(THROUGHPUT_RESPONDENTS, first)
            first += THROUGHPUT_RESPONDENTS
            load = Load(texter(server.url), everyone)
            started = time.monotonic()
            await load.run(timeout=60)
            seconds[wait] += time.monotonic() - started
            answered[wait] += messages_in(everyone)
            assert not load.count()[2]  # every delivery answered 200 the first time
            figures.deliveries += load.count()[0]
    rate = {wait: answered[wait] / seconds[wait] for wait in servers}
    figures.notes += [f"{rate[0]:.0f} webhooks/s without WAIT, {rate[1]:.0f} with WAIT 1 replica: "
                      f"ratio {rate[1] / rate[0]:.2f} (2 workers, 2 shared cores)"]
    assert rate[1] > 0.3 * rate[0]
