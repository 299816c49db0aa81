"""The load generator: virtual respondents texting the benchmark survey through signed webhooks.

    python -m bench.load --url http://127.0.0.1:PORT --respondents 400 --concurrency 48 ...

Each respondent sends the access code and then its five answers, one at a time, waiting for
each reply; at most `concurrency` respondents are in flight. Every request is built and
signed before the clock starts, so the generator spends its time sending. It prints one
JSON object: messages, seconds, latency percentiles, errors and completed respondents.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from urllib.parse import urlencode

import aiohttp

from engine.runtime.twilio import sign

PATH = "/twilio/messages"
ACCOUNT_SID = "AC" + "b" * 32
SERVICE_SID = "MG" + "b" * 32
TO = "+15550009999"
ACCESS_CODE = "@BENCH"
ANSWERS = ("8", "2", "Long queues at the till", "9", "Yes")
MESSAGES_PER_RESPONDENT = 1 + len(ANSWERS)
END_TEXT = "Thanks for taking the benchmark survey."


AREAS = ("202", "212", "312", "415", "617", "713")  # US area codes: the respondents' numbers are valid


def phone(index: int) -> str:
    """The `index`th respondent's number: a valid US number (+1 AAA 2XX XXXX on), as real traffic
    has, so that what Canvass does per number (its country, for credits) costs what it would."""
    return f"+1{AREAS[index // 8_000_000 % len(AREAS)]}{2_000_000 + index % 8_000_000:07d}"


def webhook_form(sid: str, sender: str, body: str) -> dict[str, str]:
    """The fields Twilio posts for an inbound SMS, in its order."""
    return {
        "ToCountry": "US", "ToState": "CA", "SmsMessageSid": sid, "NumMedia": "0",
        "ToCity": "", "FromZip": "", "SmsSid": sid, "FromState": "CA", "SmsStatus": "received",
        "FromCity": "", "Body": body, "FromCountry": "US", "To": TO,
        "MessagingServiceSid": SERVICE_SID, "ToZip": "", "NumSegments": "1", "MessageSid": sid,
        "AccountSid": ACCOUNT_SID, "From": sender, "ApiVersion": "2010-04-01",
    }


def conversations(first: int, count: int, signed_url: str,
                  auth_token: str | None) -> list[list[tuple[bytes, dict[str, str]]]]:
    """Every respondent's requests (body, headers), signed as Twilio signs them."""
    everyone = []
    for index in range(first, first + count):
        requests = []
        for turn, body in enumerate((ACCESS_CODE, *ANSWERS)):
            form = webhook_form(f"SM{index:030d}{turn:02d}", phone(index), body)
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
            if auth_token:
                headers["X-Twilio-Signature"] = sign(auth_token, signed_url, form)
            requests.append((urlencode(form).encode(), headers))
        everyone.append(requests)
    return everyone


# A 503 is delivered again, as Twilio does with the connection overrides the README asks for
# (`#rc=3&rp=5xx`): a Redis that stalls for a second (a slow fsync) must not end a round.
RETRIES = 3
RETRY_PAUSE = 0.5


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()
        self.completed = 0
        self.retried = 0  # 503s delivered again


async def respondent(http: aiohttp.ClientSession, url: str, requests, tally: Tally) -> None:
    reply = ""
    for body, headers in requests:
        for attempt in range(1 + RETRIES):
            started = time.perf_counter()
            try:
                async with http.post(url, data=body, headers=headers) as response:
                    reply = await response.text()
                    status = str(response.status)
            except aiohttp.ClientError as err:
                status = type(err).__name__
            tally.latencies.append(time.perf_counter() - started)
            if status != "503" or attempt == RETRIES:
                break
            tally.retried += 1  # Twilio with `#rc=3&rp=5xx` delivers the same message again
            await asyncio.sleep(RETRY_PAUSE)
        tally.statuses[status] += 1
        if status != "200":
            return  # a respondent whose message failed stops, as a test phone would
    if END_TEXT in reply:
        tally.completed += 1


async def run(url: str, everyone, concurrency: int, deadline: float) -> dict:
    tally, queue = Tally(), iter(everyone)

    async def worker(http: aiohttp.ClientSession) -> None:
        for requests in queue:
            await respondent(http, url, requests, tally)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        cpu, started = time.process_time(), time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.gather(*(worker(http) for _ in range(concurrency))), deadline)
            timed_out = False
        except TimeoutError:
            timed_out = True
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return summary(tally, len(everyone), seconds, cpu, timed_out)


def summary(tally: Tally, respondents: int, seconds: float, cpu: float, timed_out: bool) -> dict:
    latencies = sorted(tally.latencies)
    centiles = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [0.0] * 99
    messages = len(latencies)
    return {
        "respondents": respondents, "completed": tally.completed, "messages": messages,
        "ok": tally.statuses.get("200", 0),
        "errors": {status: n for status, n in tally.statuses.items() if status != "200"},
        "retried": tally.retried,
        "seconds": seconds, "messages_per_s": messages / seconds if seconds else 0.0,
        "p50_ms": centiles[49] * 1000, "p99_ms": centiles[98] * 1000,
        "load_cpu_s": cpu, "timed_out": timed_out,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench.load")
    parser.add_argument("--url", required=True, help="the server's base URL (127.0.0.1 only)")
    parser.add_argument("--signed-url", help="the base URL signatures cover (default --url)")
    parser.add_argument("--auth-token", help="sign requests with this Twilio auth token")
    parser.add_argument("--respondents", type=int, default=400)
    parser.add_argument("--first", type=int, default=0, help="the first respondent's index")
    parser.add_argument("--concurrency", type=int, default=48)
    parser.add_argument("--deadline", type=float, default=120.0, help="seconds before the run is cut off")
    args = parser.parse_args()
    if not args.url.startswith(("http://127.0.0.1:", "http://localhost:")):
        print("bench.load: --url must be on 127.0.0.1", file=sys.stderr)
        return 2
    everyone = conversations(args.first, args.respondents,
                             (args.signed_url or args.url) + PATH, args.auth_token)
    result = asyncio.run(run(args.url + PATH, everyone, args.concurrency, args.deadline))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
