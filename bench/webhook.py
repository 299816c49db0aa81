"""Webhook throughput and latency: `canvass serve` against the floor, on one Redis, in turns.

Both servers run for the whole benchmark, pinned to the server core; the load generator runs
once per round, pinned to the other core (with Redis). Rounds alternate floor, canvass, so
anything that drifts (the disk under the AOF, a noisy neighbour) hits both alike; the figures
reported are the medians over rounds.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench import load
from bench.procs import (
    FLOWS,
    VENV_BIN,
    BenchError,
    Pinning,
    Process,
    bench_env,
    cpu_seconds,
    free_port,
    start_server,
)

AUTH_TOKEN = "bench-auth-token"
TARGETS = ("floor", "canvass")


@dataclass(frozen=True)
class LoadShape:
    respondents: int = 400
    concurrency: int = 48
    rounds: int = 5
    warmup: int = 50  # respondents sent to each server before the first round
    deadline: float = 120.0  # seconds one round may take


QUICK = LoadShape(respondents=40, concurrency=16, rounds=1, warmup=8, deadline=30.0)  # bench/run --quick


def start_canvass(redis_url: str, workdir: Path, pinning: Pinning) -> tuple[Process, str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = bench_env(TWILIO_AUTH_TOKEN=AUTH_TOKEN, PUBLIC_BASE_URL=base, REDIS_URL=redis_url,
                    CANVASS_ADMIN_TOKEN="bench-admin-token",
                    DATABASE_URL=f"sqlite:///{workdir / 'canvass.db'}")
    subprocess.run([str(VENV_BIN / "canvass"), "db", "upgrade"], env=env, check=True,
                   capture_output=True)  # the records database the archiver fills
    argv = [str(VENV_BIN / "canvass"), "serve", "--flows", str(FLOWS), "--port", str(port)]
    return start_server("canvass serve", argv, port, "/readyz", env, workdir / "canvass.log", pinning), base


def start_floor(redis_url: str, workdir: Path, pinning: Pinning) -> tuple[Process, str]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.floor", "--port", str(port), "--redis-url", redis_url]
    process = start_server("floor", argv, port, "/healthz", bench_env(), workdir / "floor.log", pinning)
    return process, f"http://127.0.0.1:{port}"


def drive(base: str, signed: bool, respondents: int, first: int, shape: LoadShape,
          pinning: Pinning) -> dict:
    """One load generator run against one server; its JSON summary."""
    argv = [sys.executable, "-m", "bench.load", "--url", base, "--respondents", str(respondents),
            "--first", str(first), "--concurrency", str(shape.concurrency),
            "--deadline", str(shape.deadline)]
    if signed:
        argv += ["--auth-token", AUTH_TOKEN]
    try:
        done = subprocess.run(pinning.command(argv, pinning.load_core), env=bench_env(),
                              capture_output=True, text=True, timeout=shape.deadline + 60)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the load generator did not finish within {shape.deadline + 60:.0f} s") from None
    if done.returncode != 0:
        raise BenchError(f"the load generator failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def measured(processes: dict[str, Process], run) -> dict:
    """`run()`'s summary plus each process's CPU time per message during it."""
    before = {name: cpu_seconds(process.pid) for name, process in processes.items()}
    result = run()
    for name, process in processes.items():
        process.check_running()
        used = cpu_seconds(process.pid) - before[name]
        result[f"{name}_cpu_us_per_message"] = used / max(1, result["messages"]) * 1e6
    return result


def check(target: str, result: dict, server: Process) -> None:
    """A round whose messages failed measures nothing; stop with the server's log."""
    if result["timed_out"] or result["errors"] or result["completed"] != result["respondents"]:
        raise BenchError(
            f"{target}: {result['completed']} of {result['respondents']} respondents completed, "
            f"errors {result['errors'] or 'none'}{', timed out' if result['timed_out'] else ''}\n"
            f"{server.log_tail()}")


def run_webhooks(redis: Process, redis_url: str, workdir: Path, pinning: Pinning, shape: LoadShape,
                 progress) -> dict:
    canvass, canvass_url = start_canvass(redis_url, workdir, pinning)
    with canvass:
        floor, floor_url = start_floor(redis_url, workdir, pinning)
        with floor:
            progress(f"canvass serve is pid {canvass.pid}, the floor pid {floor.pid} (py-spy record -p PID)")
            servers = {"floor": (floor, floor_url, False), "canvass": (canvass, canvass_url, True)}
            first = 0  # every respondent of the benchmark has a number of its own
            for target, (server, base, signed) in servers.items():
                check(target, drive(base, signed, shape.warmup, first, shape, pinning), server)
                first += shape.warmup
            rounds: dict[str, list[dict]] = {target: [] for target in TARGETS}
            for number in range(1, shape.rounds + 1):
                for target in TARGETS:
                    server, base, signed = servers[target]
                    result = measured({"server": server, "redis": redis}, partial(
                        drive, base, signed, shape.respondents, first, shape, pinning))
                    check(target, result, server)
                    first += shape.respondents
                    rounds[target].append(result)
                    progress(f"round {number}/{shape.rounds} {target}: "
                             f"{result['messages_per_s']:.0f} msg/s, p50 {result['p50_ms']:.1f} ms, "
                             f"p99 {result['p99_ms']:.1f} ms")
    return summarise(rounds, shape)


def summarise(rounds: dict[str, list[dict]], shape: LoadShape) -> dict:
    def median(target: str, key: str) -> float:
        return statistics.median(r[key] for r in rounds[target])

    figures = {}
    for target in TARGETS:
        figures[target] = {key: median(target, key) for key in
                           ("messages_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_message",
                            "redis_cpu_us_per_message")}
        figures[target]["load_cpu_share"] = statistics.median(
            r["load_cpu_s"] / r["seconds"] for r in rounds[target])
    pairs = list(zip(rounds["floor"], rounds["canvass"], strict=True))
    ratios = [c["messages_per_s"] / f["messages_per_s"] for f, c in pairs]
    cpu_ratios = [f["server_cpu_us_per_message"] / max(c["server_cpu_us_per_message"], 1e-9) for f, c in pairs]
    return {
        **figures,
        "ratio": statistics.median(ratios),  # canvass/floor throughput, paired per round
        "ratio_rounds": ratios,
        "cpu_ratio": statistics.median(cpu_ratios),  # floor/canvass server CPU per message
        "shape": {"respondents": shape.respondents, "messages_per_respondent": load.MESSAGES_PER_RESPONDENT,
                  "concurrency": shape.concurrency, "rounds": shape.rounds},
        "rounds": rounds,
    }
