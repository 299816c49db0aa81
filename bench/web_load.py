"""The web load generator: virtual respondents answering the benchmark survey's web pages.

    python -m bench.web_load --url http://127.0.0.1:PORT --respondents 200 --concurrency 48 ...

Each respondent has an individual link (made through the admin API with --admin-token, else
named /l/floor-N). Before the clock starts, each link's first page is opened (that opens its
session) and read; then, timed, each respondent posts its five answers one page at a time as
a browser does: the form's hidden fields (CSRF token, page id, question) and the answer,
then the 303's page, read for the next form. A page post is the POST and that GET. At most
`concurrency` respondents are in flight. It prints one JSON object: page posts, seconds,
latency percentiles, errors, completed respondents and the first page's size in bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
from collections import Counter

import aiohttp

SURVEY = "bench-5q"
ANSWERS = ("8", "2", "Long queues at the till", "9", "1")  # what the pages' controls post
END_TEXT = "Thanks for taking the benchmark survey."
HIDDEN = re.compile(r'<input type="hidden" name="(csrf|page|question)" value="([^"]*)">')


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.completed = 0


def form_of(html: str) -> dict[str, str]:
    return dict(HIDDEN.findall(html))


async def make_links(http: aiohttp.ClientSession, base: str, admin_token: str, count: int,
                     concurrency: int) -> list[str]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    tokens: list[str] = []

    async def one(index: int) -> None:
        body = {"fields": {"FirstName": f"Ana{index}", "Store": "Northwind"}}
        async with http.post(f"{base}/admin/surveys/{SURVEY}/links", json=body, headers=headers) as response:
            if response.status != 201:
                raise SystemExit(f"bench.web_load: making a link answered {response.status}: {await response.text()}")
            tokens.append((await response.json())["token"])

    for start in range(0, count, concurrency):
        await asyncio.gather(*(one(i) for i in range(start, min(count, start + concurrency))))
    return tokens


async def first_pages(http: aiohttp.ClientSession, base: str, tokens: list[str],
                      concurrency: int) -> tuple[list[dict[str, str]], int]:
    """Each link's first form, and the first page's size in bytes."""
    forms: list[dict[str, str]] = [{} for _ in tokens]
    sizes: list[int] = []

    async def one(index: int) -> None:
        async with http.get(f"{base}/l/{tokens[index]}") as response:
            body = await response.read()
            if response.status != 200:
                raise SystemExit(f"bench.web_load: the first page answered {response.status}: {body[:300]!r}")
        sizes.append(len(body))
        forms[index] = form_of(body.decode())

    for start in range(0, len(tokens), concurrency):
        await asyncio.gather(*(one(i) for i in range(start, min(len(tokens), start + concurrency))))
    return forms, sizes[0] if sizes else 0


async def respondent(http: aiohttp.ClientSession, url: str, form: dict[str, str], tally: Tally,
                     end_text: str | None) -> None:
    page = ""
    for answer in ANSWERS:
        started = time.perf_counter()
        try:
            async with http.post(url, data={**form, "answer": answer}, allow_redirects=False) as response:
                await response.read()
                status = str(response.status)
                location = response.headers.get("Location")
            if status == "303" and location:
                async with http.get(url.rsplit("/l/", 1)[0] + location) as response:
                    page = await response.text()
                    status = "303" if response.status == 200 else f"GET {response.status}"
        except aiohttp.ClientError as err:
            status = type(err).__name__
        tally.latencies.append(time.perf_counter() - started)
        tally.statuses[status] += 1
        if status != "303":
            return
        form = form_of(page)
    if end_text is None or end_text in page:
        tally.completed += 1


async def run(base: str, respondents: int, first: int, concurrency: int, deadline: float,
              admin_token: str | None) -> dict:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        if admin_token:
            tokens = await make_links(http, base, admin_token, respondents, concurrency)
        else:
            tokens = [f"floor-{first + i}" for i in range(respondents)]
        forms, first_page_bytes = await first_pages(http, base, tokens, concurrency)
        tally = Tally()
        queue = iter(zip(tokens, forms, strict=True))

        async def worker() -> None:
            for token, form in queue:
                await respondent(http, f"{base}/l/{token}", form, tally, END_TEXT if admin_token else None)

        cpu, started = time.process_time(), time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(concurrency))), deadline)
            timed_out = False
        except TimeoutError:
            timed_out = True
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    latencies = sorted(tally.latencies)
    centiles = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [0.0] * 99
    posts = len(latencies)
    return {
        "respondents": respondents, "completed": tally.completed, "posts": posts,
        "ok": tally.statuses.get("303", 0),
        "errors": {status: n for status, n in tally.statuses.items() if status != "303"},
        "seconds": seconds, "posts_per_s": posts / seconds if seconds else 0.0,
        "p50_ms": centiles[49] * 1000, "p99_ms": centiles[98] * 1000,
        "load_cpu_s": cpu, "timed_out": timed_out, "first_page_bytes": first_page_bytes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.web_load")
    parser.add_argument("--url", required=True, help="the server's base URL (127.0.0.1 only)")
    parser.add_argument("--admin-token", help="make each respondent's link through the admin API")
    parser.add_argument("--respondents", type=int, default=200)
    parser.add_argument("--first", type=int, default=0, help="the first respondent's index (floor links)")
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds before the run is cut off")
    args = parser.parse_args()
    if not args.url.startswith(("http://127.0.0.1:", "http://localhost:")):
        print("bench.web_load: --url must be on 127.0.0.1", file=sys.stderr)
        return 2
    result = asyncio.run(run(args.url, args.respondents, args.first, args.concurrency, args.deadline,
                             args.admin_token))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
