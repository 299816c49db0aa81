"""The web survey: page posts per second through `canvass serve` against the floor, and the
first page's weight.

Both servers run for the whole part, pinned to the server core, on one Redis; the load
generator (bench.web_load) runs once per round, pinned to the other core with Redis. Rounds
alternate floor, canvass; the figures are the medians over rounds. A page post is what a
respondent's browser does for one answer: POST the form (CSRF token, page id, answer),
then GET the page its 303 leads to. The floor (bench.web_floor) answers the same exchange
rendering a fixed page, one Redis GET and SET per request.

This part alone (bench/run runs it with the others), its figures as JSON on stdout:

    python -m bench.web [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench.procs import (
    BenchError,
    Pinning,
    Process,
    bench_env,
    free_port,
    redis_server,
    run_alone,
    start_server,
)
from bench.web_load import ANSWERS
from bench.webhook import measured, start_canvass

ADMIN_TOKEN = "bench-admin-token"  # what webhook.start_canvass gives `canvass serve`
TARGETS = ("floor", "canvass")
RATIO_TARGET = 0.7
FIRST_PAGE_TARGET = 30_000  # bytes: "the first page under 30 KB"


@dataclass(frozen=True)
class WebShape:
    respondents: int = 200
    concurrency: int = 48
    rounds: int = 5
    warmup: int = 20
    deadline: float = 120.0


QUICK = WebShape(respondents=20, concurrency=8, rounds=1, warmup=4, deadline=30.0)


def start_floor(redis_url: str, workdir: Path, pinning: Pinning) -> tuple[Process, str]:
    port = free_port()
    argv = [sys.executable, "-m", "bench.web_floor", "--port", str(port), "--redis-url", redis_url]
    process = start_server("web floor", argv, port, "/healthz", bench_env(), workdir / "web-floor.log", pinning)
    return process, f"http://127.0.0.1:{port}"


def drive(base: str, admin: bool, respondents: int, first: int, shape: WebShape, pinning: Pinning) -> dict:
    argv = [sys.executable, "-m", "bench.web_load", "--url", base, "--respondents", str(respondents),
            "--first", str(first), "--concurrency", str(shape.concurrency), "--deadline", str(shape.deadline)]
    if admin:
        argv += ["--admin-token", ADMIN_TOKEN]
    try:
        done = subprocess.run(pinning.command(argv, pinning.load_core), env=bench_env(),
                              capture_output=True, text=True, timeout=shape.deadline + 120)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the web load generator did not finish within {shape.deadline + 120:.0f} s") from None
    if done.returncode != 0:
        raise BenchError(f"the web load generator failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    result["messages"] = result["posts"]  # what webhook.measured divides CPU time by
    return result


def check(target: str, result: dict, server: Process) -> None:
    if result["timed_out"] or result["errors"] or result["completed"] != result["respondents"]:
        raise BenchError(
            f"web {target}: {result['completed']} of {result['respondents']} respondents completed, "
            f"errors {result['errors'] or 'none'}{', timed out' if result['timed_out'] else ''}\n"
            f"{server.log_tail()}")


def run_web(redis: Process, redis_url: str, workdir: Path, pinning: Pinning, shape: WebShape, progress) -> dict:
    progress(f"web survey: {shape.rounds} rounds of {shape.respondents} respondents x {len(ANSWERS)} page posts, "
             f"floor and canvass in turns")
    canvass, canvass_url = start_canvass(redis_url, workdir, pinning)
    with canvass:
        floor, floor_url = start_floor(redis_url, workdir, pinning)
        with floor:
            progress(f"canvass serve is pid {canvass.pid}, the web floor pid {floor.pid} (py-spy record -p PID)")
            servers = {"floor": (floor, floor_url, False), "canvass": (canvass, canvass_url, True)}
            first = 0
            first_page = 0
            for target, (server, base, admin) in servers.items():
                result = drive(base, admin, shape.warmup, first, shape, pinning)
                check(target, result, server)
                first += shape.warmup
                if admin:
                    first_page = result["first_page_bytes"]
            rounds: dict[str, list[dict]] = {target: [] for target in TARGETS}
            for number in range(1, shape.rounds + 1):
                for target in TARGETS:
                    server, base, admin = servers[target]
                    result = measured({"server": server, "redis": redis},
                                      partial(drive, base, admin, shape.respondents, first, shape, pinning))
                    check(target, result, server)
                    first += shape.respondents
                    rounds[target].append(result)
                    progress(f"round {number}/{shape.rounds} {target}: {result['posts_per_s']:.0f} page posts/s, "
                             f"p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms")
    return summarise(rounds, shape, first_page)


def summarise(rounds: dict[str, list[dict]], shape: WebShape, first_page: int) -> dict:
    figures = {target: {key: statistics.median(r[key] for r in rounds[target]) for key in
                        ("posts_per_s", "p50_ms", "p99_ms", "server_cpu_us_per_message", "redis_cpu_us_per_message")}
               for target in TARGETS}
    pairs = list(zip(rounds["floor"], rounds["canvass"], strict=True))
    ratios = [c["posts_per_s"] / f["posts_per_s"] for f, c in pairs]
    return {
        **figures,
        "ratio": statistics.median(ratios),  # canvass/floor page posts per second, paired per round
        "ratio_rounds": ratios,
        "ratio_target": RATIO_TARGET,
        "first_page_bytes": first_page,
        "first_page_target": FIRST_PAGE_TARGET,
        "shape": {"respondents": shape.respondents, "posts_per_respondent": len(ANSWERS),
                  "concurrency": shape.concurrency, "rounds": shape.rounds},
        "rounds": rounds,
    }


def run(workdir: Path, pinning: Pinning, shape: WebShape, progress) -> dict:
    redis, redis_url = redis_server(workdir / "redis-web", pinning)
    with redis:
        return run_web(redis, redis_url, workdir, pinning, shape, progress)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.web", description="the web survey's benchmark alone")
    parser.add_argument("--quick", action="store_true", help="tiny loads")
    parser.add_argument("--rounds", type=int, help="rounds per server")
    args = parser.parse_args(argv)
    shape = QUICK if args.quick else WebShape()
    if args.rounds:
        shape = WebShape(**{**shape.__dict__, "rounds": args.rounds})
    return run_alone("web", lambda workdir, progress: run(workdir, Pinning(), shape, progress))


if __name__ == "__main__":
    sys.exit(main())
