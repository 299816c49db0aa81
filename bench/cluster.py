"""Webhooks on a Redis Cluster: the webhooks part's load through `canvass serve` on one Redis
and on a cluster of three masters with a replica each, in turns; the cost of routing.

Two `canvass serve` (one worker each, as in the webhooks part) run for the whole part, pinned to
the server core: one on a Redis of its own, one on the cluster (tests/redis_cluster.py, whose
nodes here run the shipped configuration, AOF and fsync always, pinned to the load core with
Redis and the load generator). Rounds alternate one Redis, cluster; each ends once its
server has archived the round's responses (so no work is left to run in the other's round),
and the throughput compared is that sustained: the round's messages over the time until they
were answered and archived. The figures are the medians over rounds, the ratio paired per round. After the rounds, each master's share of the
run's conversations (their records, counted on each master) and of the 128 shards.

This part alone (bench/run runs it with the others), its figures as JSON on stdout:

    python -m bench.cluster [--quick] [--rounds R] [--respondents V] [--concurrency C]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import redis

from bench import load
from bench.procs import (
    BenchError,
    Pinning,
    Process,
    cpu_seconds,
    redis_server,
    run_alone,
    wait_until_ready,
)
from bench.webhook import QUICK, LoadShape, check, drive, start_canvass
from engine.redis.store import ClusterLayout, key_slot, shard_tags
from engine.tools.local_redis import RedisMissing, redis_answers, redis_command
from tests.redis_cluster import RedisCluster

TARGETS = ("one", "cluster")  # canvass on one Redis, canvass on the cluster
RATIO_TARGET = 0.8  # cluster/one Redis throughput: "the cost of routing"
ARCHIVE_WAIT = 15.0  # seconds an archiver gets, after its round, to catch up
IDLE_SECONDS = 3.0  # how long both servers are watched with no load: their background work's CPU


class ClusterNode(Process):
    """One cluster node as RedisCluster starts it (`overrides` set after construction), from
    the shipped configuration, pinned to the load core."""

    def __init__(self, directory: Path, port: int, pinning: Pinning):
        super().__init__(f"redis-server :{port}", [], directory / "redis.stdout")
        self.directory, self.port, self.pinning = directory, port, pinning
        self.overrides: tuple[str, ...] = ()

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.argv = self.pinning.command(
            redis_command(self.port, self.directory, *self.overrides, "--logfile", str(self.directory / "redis.log")),
            self.pinning.load_core)
        super().start()
        wait_until_ready(self, lambda: redis_answers(self.port))

    def log_tail(self, lines: int = 20) -> str:
        """Its Redis log's last lines (what it says when it does not start)."""
        try:
            return "\n".join((self.directory / "redis.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_cluster(directory: Path, pinning: Pinning) -> RedisCluster:
    """Three masters with a replica each, every node with the shipped AOF (fsync always)."""
    cluster = RedisCluster(directory, partial(ClusterNode, pinning=pinning), persistence=())
    try:
        cluster.start()
    except (RedisMissing, RuntimeError, subprocess.SubprocessError) as err:
        cluster.stop()
        raise BenchError(f"the Redis Cluster did not start: {err}") from None
    return cluster


def measured(server: Process, redis_groups: dict[str, list[Process]], run) -> dict:
    """`run()`'s summary plus the CPU time per message of the server and of each group of
    Redis processes during it."""
    groups = {"server": [server], **redis_groups}
    before = {name: sum(cpu_seconds(p.pid) for p in group) for name, group in groups.items()}
    result = run()
    for name, group in groups.items():
        for process in group:
            process.check_running()
        used = sum(cpu_seconds(p.pid) for p in group) - before[name]
        result[f"{name}_cpu_us_per_message"] = used / max(1, result["messages"]) * 1e6
    return result


def archived(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return connection.execute("SELECT count(*) FROM responses").fetchone()[0]


def caught_up(database: Path, responses: int) -> tuple[int, float]:
    """Wait until `responses` are archived into the records database, or ARCHIVE_WAIT has
    passed; (how many are, seconds waited). Both servers share the server core, so what one
    archives after its round would run in the other's: each round ends when its archiver has
    caught up, its CPU counted in its own round."""
    started = time.monotonic()
    while (count := archived(database)) < responses and time.monotonic() - started < ARCHIVE_WAIT:
        time.sleep(0.05)
    return count, time.monotonic() - started


def idle_cpu(servers: dict[str, Process]) -> dict[str, float]:
    """The share of a core each server uses with no load, over IDLE_SECONDS: the polling of
    its background tasks (on a cluster: every shard's timers, outbox and record streams)."""
    before = {target: cpu_seconds(server.pid) for target, server in servers.items()}
    time.sleep(IDLE_SECONDS)
    return {target: (cpu_seconds(server.pid) - before[target]) / IDLE_SECONDS for target, server in servers.items()}


def driven(base: str, respondents: int, first: int, shape: LoadShape, pinning: Pinning, database: Path) -> dict:
    """One load generator run, then the wait for its responses to be archived."""
    result = drive(base, True, respondents, first, shape, pinning)
    result["archived"], result["archive_wait_s"] = caught_up(database, first + respondents)
    # what the server sustains: the round's messages over the time until they were all answered
    # and archived (a server that defers its archiving past the round only borrows the time)
    result["sustained_per_s"] = result["messages"] / (result["seconds"] + result["archive_wait_s"])
    return result


def spread(cluster: RedisCluster) -> list[dict]:
    """Per master (port): the shards whose slot it serves and the conversation records on it."""
    masters = cluster.masters()
    shards = {port: 0 for port in masters}
    for tag in shard_tags():
        shards[cluster.master_of_slot(key_slot(tag.encode()))] += 1
    pattern = ClusterLayout().respondents()
    rows = []
    for port in masters:
        with cluster.client(port) as client:
            records = sum(1 for _ in client.scan_iter(match=pattern, count=1000))
        rows.append({"port": port, "shards": shards[port], "conversations": records})
    return rows


def run_cluster(workdir: Path, pinning: Pinning, shape: LoadShape, progress) -> dict:
    progress("starting one Redis, and a cluster of 3 masters with a replica each")
    single, single_url = redis_server(workdir / "redis-one", pinning)
    with single:
        cluster = start_cluster(workdir / "redis-cluster", pinning)
        try:
            masters = set(cluster.masters())
            groups = {"masters": [n for n in cluster.nodes if n.port in masters],
                      "replicas": [n for n in cluster.nodes if n.port not in masters]}
            return _rounds(workdir, pinning, shape, progress, single, single_url, cluster, groups)
        finally:
            cluster.stop()


def _rounds(workdir: Path, pinning: Pinning, shape: LoadShape, progress, single: Process, single_url: str,
            cluster: RedisCluster, groups: dict[str, list[Process]]) -> dict:
    (workdir / "one").mkdir(exist_ok=True)
    (workdir / "cluster").mkdir(exist_ok=True)
    one, one_url = start_canvass(single_url, workdir / "one", pinning)
    with one:
        on_cluster, on_cluster_url = start_canvass(cluster.url, workdir / "cluster", pinning)
        with on_cluster:
            progress(f"canvass serve on one Redis is pid {one.pid}, on the cluster pid {on_cluster.pid} "
                     "(py-spy record -p PID)")
            servers = {"one": (one, one_url, {"redis": [single]}),
                       "cluster": (on_cluster, on_cluster_url, groups)}
            databases = {target: workdir / target / "canvass.db" for target in TARGETS}
            # each server's respondents are numbered from 0, so each has archived `first` before a round
            first = {target: 0 for target in TARGETS}
            for target, (server, base, _) in servers.items():
                check(target, driven(base, shape.warmup, 0, shape, pinning, databases[target]), server)
                first[target] = shape.warmup
            idle = idle_cpu({target: server for target, (server, _, _) in servers.items()})
            rounds: dict[str, list[dict]] = {target: [] for target in TARGETS}
            for number in range(1, shape.rounds + 1):
                for target in TARGETS:
                    server, base, redis_groups = servers[target]
                    result = measured(server, redis_groups, partial(
                        driven, base, shape.respondents, first[target], shape, pinning, databases[target]))
                    check(target, result, server)
                    first[target] += shape.respondents
                    rounds[target].append(result)
                    progress(f"round {number}/{shape.rounds} {target}: "
                             f"{result['messages_per_s']:.0f} msg/s, p50 {result['p50_ms']:.1f} ms, "
                             f"p99 {result['p99_ms']:.1f} ms; archived {result['archive_wait_s']:.1f} s later")
    try:
        masters = spread(cluster)
    except redis.RedisError as err:
        raise BenchError(f"cannot count the conversations on the masters: {err}") from None
    return summarise(rounds, shape, masters, {target: archived(path) for target, path in databases.items()},
                     idle)


def summarise(rounds: dict[str, list[dict]], shape: LoadShape, masters: list[dict],
              archived: dict[str, int], idle: dict[str, float]) -> dict:
    def median(target: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds[target])

    keys = {"one": ("redis",), "cluster": ("masters", "replicas")}
    figures = {target: {key: median(target, key) for key in
                        ("messages_per_s", "sustained_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_message",
                         "archive_wait_s",
                         *(f"{group}_cpu_us_per_message" for group in keys[target]))}
               for target in TARGETS}
    pairs = list(zip(rounds["one"], rounds["cluster"], strict=True))
    ratios = [c["sustained_per_s"] / o["sustained_per_s"] for o, c in pairs]
    answered = [c["messages_per_s"] / o["messages_per_s"] for o, c in pairs]
    cpu_ratios = [o["server_cpu_us_per_message"] / max(c["server_cpu_us_per_message"], 1e-9) for o, c in pairs]
    return {
        **figures,
        "ratio": statistics.median(ratios),  # cluster/one Redis sustained throughput, paired per round
        "ratio_rounds": ratios,
        "answered_ratio": statistics.median(answered),  # the same of the load generator's rate alone
        "ratio_target": RATIO_TARGET,
        "cpu_ratio": statistics.median(cpu_ratios),  # one Redis/cluster server CPU per message
        "spread": masters,  # per master: shards served, conversation records held
        "cluster_respondents": shape.warmup + shape.rounds * shape.respondents,  # its conversations
        "idle_cpu_share": idle,  # of a core, each server with no load (timers, outbox, archiver polling)
        "archived": archived,  # responses in each server's records database at the end (all: as many as respondents)
        "shape": {"respondents": shape.respondents, "messages_per_respondent": load.MESSAGES_PER_RESPONDENT,
                  "concurrency": shape.concurrency, "rounds": shape.rounds},
        "rounds": rounds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster",
                                     description="webhooks on a Redis Cluster against one Redis, alone")
    parser.add_argument("--quick", action="store_true", help="tiny loads")
    parser.add_argument("--rounds", type=int, help="rounds per server (default 5)")
    parser.add_argument("--respondents", type=int, help="respondents per round (default 400)")
    parser.add_argument("--concurrency", type=int, help="respondents in flight (default 48)")
    args = parser.parse_args(argv)
    for name in ("rounds", "respondents", "concurrency"):
        value = getattr(args, name)
        if value is not None and not 1 <= value <= 100_000:
            parser.error(f"--{name} must be between 1 and 100000")
    shape = replace(QUICK if args.quick else LoadShape(),
                    **{k: v for k in ("rounds", "respondents", "concurrency") if (v := getattr(args, k))})
    return run_alone("cluster", lambda workdir, progress: run_cluster(workdir, Pinning(), shape, progress))


if __name__ == "__main__":
    sys.exit(main())
