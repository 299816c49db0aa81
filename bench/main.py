"""bench/run: every Canvass benchmark in one command, a table on stdout, figures as JSON.

    bench/run                   the full run (about twenty minutes on 2 cores: the export
                                of 1,000,000 responses and the import of 1,000,000 contacts
                                are most of it; opening 100,000 conversations for Redis's
                                memory, three or four; sending 10,000 invitations and a paced
                                distribution, a minute or two)
    bench/run --quick           a short smoke run (about a minute)
    bench/run --json out.json   also write the figures as JSON
    python -m bench.cluster     webhooks on a Redis Cluster against one Redis, alone (as the
                                other parts with a __main__: bench.web, bench.sending, ...)
    bench/run --conversations 1000000
                                the Redis memory figure over a million open conversations
                                (their fill takes about half an hour on 2 cores)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench import cluster, contacts_import, flow_cost, memory, records, sending, web, webhook
from bench.flow_cost import CostShape
from bench.procs import BenchError, Pinning, pinned_to, redis_server
from bench.report import render, verdicts
from bench.webhook import LoadShape

QUICK_LOAD = webhook.QUICK
QUICK_COST = CostShape(rounds=5, steps=300, compiles=1)
FULL_CONVERSATIONS, QUICK_CONVERSATIONS = 100_000, 300


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run with tiny loads")
    parser.add_argument("--json", metavar="PATH", type=Path, help="write the figures as JSON to PATH")
    parser.add_argument("--rounds", type=int, metavar="R", help="webhook rounds per server (default 5)")
    parser.add_argument("--respondents", type=int, metavar="V", help="respondents per round (default 400)")
    parser.add_argument("--concurrency", type=int, metavar="C", help="respondents in flight (default 48)")
    parser.add_argument("--conversations", type=int, metavar="N",
                        help="open conversations the Redis memory figure fills (default 100000; 1000000 "
                             "takes about half an hour on 2 cores)")
    args = parser.parse_args(argv)
    if args.conversations is not None and not 100 <= args.conversations <= 2_000_000:
        parser.error("--conversations must be between 100 and 2000000")
    for name in ("rounds", "respondents", "concurrency"):
        value = getattr(args, name)
        if value is not None and not 1 <= value <= 100_000:
            parser.error(f"--{name} must be between 1 and 100000")
    if args.json is not None and not args.json.parent.is_dir():
        parser.error(f"--json: the folder {args.json.parent} does not exist")
    return args


def progress(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict:
    load_shape = QUICK_LOAD if args.quick else LoadShape()
    load_shape = replace(load_shape, **{k: v for k, v in (("rounds", args.rounds), ("respondents", args.respondents),
                                                          ("concurrency", args.concurrency)) if v is not None})
    cost_shape = QUICK_COST if args.quick else CostShape()
    pinning = Pinning()
    results: dict = {"mode": "quick" if args.quick else "full", "cores": len(os.sched_getaffinity(0)),
                     "pinning": pinning.describe(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if pinning.note:
        progress(f"note: {pinning.note}")
    with pinned_to(pinning.server_core):
        progress("step cost against flow size")
        results["step"] = flow_cost.step_cost(cost_shape)
        progress("compile cost against flow size")
        results["compile"] = flow_cost.compile_cost(cost_shape)
    with tempfile.TemporaryDirectory(prefix="canvass-bench-") as workdir:
        redis, redis_url = redis_server(Path(workdir) / "redis", pinning)
        with redis:
            progress("redis memory per open conversation")
            results["memory"] = asyncio.run(memory.measure(
                redis_url, args.conversations or (QUICK_CONVERSATIONS if args.quick else FULL_CONVERSATIONS)))
            progress(f"webhooks: {load_shape.rounds} rounds of {load_shape.respondents} respondents, "
                     f"floor and canvass in turns")
            results["webhooks"] = webhook.run_webhooks(redis, redis_url, Path(workdir), pinning, load_shape, progress)
            results["web"] = web.run_web(redis, redis_url, Path(workdir), pinning,
                                         web.QUICK if args.quick else web.WebShape(), progress)
        progress(f"webhooks on a Redis Cluster: {load_shape.rounds} rounds of {load_shape.respondents} "
                 "respondents, one Redis and the cluster in turns")
        results["cluster"] = cluster.run_cluster(Path(workdir), pinning, load_shape, progress)
        records_shape = records.QUICK if args.quick else records.RecordsShape()
        results["records"] = records.run_records(Path(workdir), pinning, records_shape, progress)
        results["sending"] = sending.run(Path(workdir), pinning, args.quick, progress)
        with pinned_to(pinning.server_core):
            results["contacts_import"] = contacts_import.run(Path(workdir), args.quick, progress)
    results["targets"] = verdicts(results)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = run(args)
    except BenchError as err:
        print(f"bench/run: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(render(results))
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
        except OSError as err:
            print(f"bench/run: cannot write {args.json}: {err.strerror or err}", file=sys.stderr)
            return 1
    return 0
