"""Twilio, faked from both sides: its Messages API (records every request, answers as Twilio
does, and fails on demand as Twilio does when things go wrong) and a respondent's phone (sends
webhooks signed as Twilio signs them).

In tests, the `fake_twilio` fixture serves FakeTwilio on 127.0.0.1. On its own, for a benchmark
that needs it in a process of its own:

    python -m tests.fake_twilio --port 0 --log arrivals.jsonl

prints `listening on http://127.0.0.1:PORT`, and on SIGTERM (or SIGINT) writes every arrival
to the --log file as JSON lines (see Arrival) and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import signal
import sys
import time
import xml.etree.ElementTree as ET
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from pathlib import Path

from aiohttp import web

from engine.runtime.twilio import SEND_TIMEOUT, sign

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "test-auth-token"
PUBLIC_BASE_URL = "https://canvass.example.com"  # as if behind a proxy: signatures cover this
UNSUBSCRIBED = (21610, "Attempt to send to unsubscribed recipient")

# Twilio's error codes for what can go wrong with a create-message request: HTTP status and
# message as Twilio answers them (https://www.twilio.com/docs/errors/{code}).
ERRORS = {
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    20503: (503, "Service Unavailable"),
    21211: (400, "The 'To' number {to} is not a valid phone number."),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21614: (400, "'To' number {to} is not a valid mobile number"),
}
CODE_OF_STATUS = {429: 20429, 500: 20500, 503: 20503}
_TWILIO_CODE = object()  # fail_next/fail_for's default: the code Twilio answers the status with


CLIENT_HEADERS = ("Authorization", "User-Agent", "X-Twilio-Client", "Accept", "Accept-Charset", "Content-Type")


@dataclass
class SentMessage:
    account_sid: str
    form: dict[str, str]
    username: str  # the Basic auth user the client sent
    headers: dict[str, str] = field(default_factory=dict)  # those a Twilio client sets (CLIENT_HEADERS)

    @property
    def to(self) -> str:
        return self.form["To"]

    @property
    def body(self) -> str | None:
        return self.form.get("Body")


@dataclass(frozen=True)
class Fault:
    """What the fake does instead of (or before) answering a request as usual.

    kind "error": answer `status` with Twilio's JSON error body for `code` (code None: a bare
    text body, as a proxy in front of Twilio answers); "slow": wait `seconds`, then answer as
    usual; "timeout": likewise, the wait meant to outlast the client's timeout; "drop": the
    message is created, then the connection is closed without an answer (outcome unknown)."""

    kind: str
    status: int | None = None
    code: int | None = None
    message: str = ""
    retry_after: float | None = None  # seconds, sent as Retry-After (whole seconds, rounded up)
    seconds: float = 0.0


@dataclass
class Arrival:
    """One create-message request as the fake saw it and answered it."""

    at: float  # the fake's monotonic clock when the request had been read
    wall: float  # time.time() then
    to: str | None
    sender: str | None  # From, else MessagingServiceSid: what Twilio paces by
    body: str | None
    outcome: str  # "created", "error", "slow" (created, late), "timeout" (created, too late), "drop" (created)
    status: int | None  # the HTTP status answered; None when the connection was dropped
    code: int | None = None  # Twilio's error code, for errors
    sid: str | None = None  # the message's sid when Twilio created it

    @property
    def created(self) -> bool:
        """Twilio made the message (its phone gets it), whether or not the client heard so."""
        return self.sid is not None


@dataclass
class _Rule:
    fault: Fault
    to: str | None  # None: any request
    remaining: int | None  # None: every matching request from now on


def _error_fault(status: int | None, code, message: str | None, retry_after: float | None) -> Fault:
    if code is _TWILIO_CODE:
        if status is None:
            raise ValueError("give the status or the code of the error")
        code = CODE_OF_STATUS.get(status)
        if code is None:
            raise ValueError(f"there is no Twilio code for status {status}: give one (or code=None)")
    if status is None:
        if code not in ERRORS:
            raise ValueError(f"the status of code {code} is unknown here: give it")
        status = ERRORS[code][0]
    if message is None:
        message = ERRORS[code][1] if code in ERRORS else HTTPStatus(status).phrase
    if retry_after is None and status == 429:
        retry_after = 1.0
    return Fault("error", status, code, message, retry_after)


@dataclass
class FakeTwilio:
    account_sid: str
    auth_token: str
    messages: list[SentMessage] = field(default_factory=list)
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)  # To -> (error code, message)
    base_url: str = ""  # where it listens, once started
    arrivals: list[Arrival] = field(default_factory=list)  # every create-message request, in order
    timeout_seconds: float = SEND_TIMEOUT + 1.0  # how long time_out_next/time_out_for wait
    latency: float = 0.0  # seconds every answer takes, as the real API's round trip across the internet
    clock: Callable[[], float] = time.monotonic  # injectable, for windows on a made-up timeline
    wall_clock: Callable[[], float] = time.time
    _rules: list[_Rule] = field(default_factory=list)
    _sids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def bodies(self, to: str | None = None) -> list[str | None]:
        return [m.body for m in self.messages if to is None or m.to == to]

    # ------------------------------------------------------------ faults on demand

    def fail_next(self, count: int = 1, *, status: int | None = None, code=_TWILIO_CODE,
                  message: str | None = None, retry_after: float | None = None) -> None:
        """The next `count` requests get Twilio's error: by status (429, 500, 503: with the code
        Twilio gives it, or code=None for a bare text body) or by code (21610, 21211, 21614...).
        A 429 says Retry-After (1 second unless given)."""
        self._add(_error_fault(status, code, message, retry_after), None, count)

    def fail_for(self, to: str, *, status: int | None = None, code=_TWILIO_CODE,
                 message: str | None = None, retry_after: float | None = None,
                 times: int | None = None) -> None:
        """Requests to `to` get Twilio's error (as fail_next), every one or the next `times`."""
        self._add(_error_fault(status, code, message, retry_after), to, times)

    def delay_next(self, count: int = 1, *, seconds: float) -> None:
        """The next `count` requests are answered as usual, `seconds` late."""
        self._add(Fault("slow", seconds=seconds), None, count)

    def delay_for(self, to: str, *, seconds: float, times: int | None = None) -> None:
        self._add(Fault("slow", seconds=seconds), to, times)

    def time_out_next(self, count: int = 1) -> None:
        """The next `count` requests create their message and are answered after
        `timeout_seconds` (set it above the client's timeout, and short, to keep tests fast)."""
        self._add(Fault("timeout"), None, count)

    def time_out_for(self, to: str, *, times: int | None = None) -> None:
        self._add(Fault("timeout"), to, times)

    def drop_next(self, count: int = 1) -> None:
        """The next `count` requests create their message, then lose their connection unanswered."""
        self._add(Fault("drop"), None, count)

    def drop_for(self, to: str, *, times: int | None = None) -> None:
        self._add(Fault("drop"), to, times)

    def clear_faults(self) -> None:
        self._rules.clear()
        self.refuse.clear()

    def _add(self, fault: Fault, to: str | None, count: int | None) -> None:
        if count is not None and count < 1:
            raise ValueError(f"a fault applies to at least one request, not {count}")
        self._rules.append(_Rule(fault, to, count))

    def _fault_for(self, to: str) -> Fault | None:
        """The fault this request meets: a rule for its number first, then `refuse`, then the
        next-requests rules, each in the order given. A rule with a count is used up by it."""
        rules = [rule for rule in self._rules if rule.to == to]
        if not rules and to in self.refuse:
            code, message = self.refuse[to]
            return Fault("error", 400, code, message)
        rules = rules or [rule for rule in self._rules if rule.to is None]
        if not rules:
            return None
        rule = rules[0]
        if rule.remaining is not None:
            rule.remaining -= 1
            if rule.remaining == 0:
                self._rules.remove(rule)
        return rule.fault

    # ------------------------------------------------------------ what arrived, and when

    def created(self, sender: str | None = None) -> list[Arrival]:
        """The messages Twilio created (answered 201, or created and then left unanswered:
        dropped, timed out), in order of arrival; only `sender`'s when given."""
        return [a for a in self.arrivals if a.created and (sender is None or a.sender == sender)]

    def senders(self) -> list[str]:
        return list(dict.fromkeys(a.sender for a in self.arrivals if a.created and a.sender))

    def max_in_window(self, seconds: float = 1.0, sender: str | None = None) -> int:
        """The most messages created in any window of `seconds` (half-open: [t, t + seconds)),
        by arrival time: what a pace of N per `seconds` must keep at or under N."""
        times = sorted(a.at for a in self.created(sender))
        # the busiest window starts at some arrival: count from each one
        return max((bisect_left(times, at + seconds, first) - first for first, at in enumerate(times)),
                   default=0)

    def rate_series(self, sender: str | None = None) -> list[int]:
        """Messages created in each whole second from the first one's arrival (zeros kept)."""
        times = [a.at for a in self.created(sender)]
        if not times:
            return []
        start = min(times)
        counts = Counter(int(at - start) for at in times)
        return [counts.get(second, 0) for second in range(max(counts) + 1)]

    def arrival_log(self) -> str:
        """Every arrival as JSON lines (asdict of Arrival), for a benchmark's analysis."""
        return "".join(json.dumps(asdict(arrival)) + "\n" for arrival in self.arrivals)

    # ------------------------------------------------------------ the Messages API

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self._create)
        return app

    def _authorised(self, request: web.Request) -> str | None:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return None
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        return user if (user, password) == (self.account_sid, self.auth_token) else None

    async def _create(self, request: web.Request) -> web.StreamResponse:
        user = self._authorised(request)
        if user is None:
            return self._error(401, 20003, "Authenticate")
        form = {key: value for key, value in (await request.post()).items()}
        account = request.match_info["account"]
        self.messages.append(SentMessage(account, form, user, {
            name: request.headers[name] for name in CLIENT_HEADERS if name in request.headers}))
        arrival = Arrival(self.clock(), self.wall_clock(), form.get("To"),
                          form.get("From") or form.get("MessagingServiceSid"), form.get("Body"),
                          "error", 400)
        self.arrivals.append(arrival)
        if self.latency:
            await asyncio.sleep(self.latency)
        if "To" not in form or not ({"From", "MessagingServiceSid"} & form.keys()):
            arrival.code = 21603
            return self._error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
        fault = self._fault_for(form["To"])
        if fault is not None and fault.kind == "error":
            arrival.status, arrival.code = fault.status, fault.code
            return self._error(fault.status, fault.code, fault.message.format(to=form["To"]),
                               fault.retry_after)
        sid = f"SM{next(self._sids):032x}"
        arrival.sid, arrival.outcome, arrival.status = sid, "created", 201
        if fault is not None:
            arrival.outcome = fault.kind
            if fault.kind == "drop":
                arrival.status = None
                request.transport.close()  # read and acted on, never answered:
                return web.Response()  # aiohttp finds the transport closing and writes nothing
            await asyncio.sleep(self.timeout_seconds if fault.kind == "timeout" else fault.seconds)
        return web.json_response({
            "sid": sid, "account_sid": account, "to": form["To"], "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"), "body": form.get("Body"),
            "status": "queued", "num_segments": "1", "direction": "outbound-api",
            "api_version": "2010-04-01", "date_created": "Thu, 30 Jul 2015 20:12:31 +0000",
            "date_updated": "Thu, 30 Jul 2015 20:12:31 +0000", "date_sent": None, "price": None,
            "error_code": None, "error_message": None, "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
        }, status=201)

    @staticmethod
    def _error(status: int, code: int | None, message: str, retry_after: float | None = None) -> web.Response:
        headers = {"Retry-After": str(-int(-retry_after // 1))} if retry_after is not None else None
        if code is None:  # no JSON: what a proxy or load balancer in front of Twilio answers
            return web.Response(status=status, text=message, headers=headers)
        return web.json_response({"code": code, "message": message, "status": status,
                                  "more_info": f"https://www.twilio.com/docs/errors/{code}"},
                                 status=status, headers=headers)


def replies_of(twiml: str) -> list[str]:
    root = ET.fromstring(twiml)
    assert root.tag == "Response"
    return ["".join(message.itertext()) for message in root.findall("Message")]


class Phone:
    """A respondent texting the server through (a stand-in for) Twilio: signed webhooks."""

    _sids = itertools.count(1)

    def __init__(self, client, number: str, channel: str = "sms", auth_token: str = AUTH_TOKEN):
        self.client, self.number, self.channel, self.auth_token = client, number, channel, auth_token

    @property
    def address(self) -> str:
        return "whatsapp:" + self.number if self.channel == "whatsapp" else self.number

    def form(self, body: str, sid: str | None = None) -> dict[str, str]:
        return {"MessageSid": sid or f"SM{next(self._sids):032x}", "AccountSid": ACCOUNT_SID,
                "From": self.address, "To": "+15550000000", "Body": body, "NumMedia": "0"}

    async def post(self, form: dict[str, str], path: str = "/twilio/messages", signature: str | None = None):
        if signature is None:
            signature = sign(self.auth_token, PUBLIC_BASE_URL + path, form)
        return await self.client.post(path, data=form, headers={"X-Twilio-Signature": signature})

    async def send(self, body: str, sid: str | None = None) -> list[str]:
        response = await self.post(self.form(body, sid))
        assert response.status == 200, await response.text()
        assert response.content_type == "application/xml"
        return replies_of(await response.text())


# ---------------------------------------------------------------- as a process of its own


async def _serve(port: int, log: Path | None, account_sid: str, auth_token: str, latency: float) -> None:
    fake = FakeTwilio(account_sid, auth_token, latency=latency)
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = runner.addresses[0][1]
    fake.base_url = f"http://127.0.0.1:{bound}"
    print(f"listening on {fake.base_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await runner.cleanup()
    if log is not None:
        log.write_text(fake.arrival_log())
    print(f"{len(fake.created())} messages created of {len(fake.arrivals)} requests", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_twilio",
                                     description="a fake Twilio Messages API on 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="the port (default 0: any free one)")
    parser.add_argument("--log", type=Path, metavar="PATH",
                        help="on SIGTERM, write every request's arrival here as JSON lines")
    parser.add_argument("--account-sid", default=ACCOUNT_SID)
    parser.add_argument("--auth-token", default=AUTH_TOKEN)
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS",
                        help="answer every request this long after it came (Twilio's round trip)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error("--port must be between 0 and 65535")
    if not 0 <= args.latency <= 60:
        parser.error("--latency must be between 0 and 60 seconds")
    if args.log is not None and not args.log.parent.is_dir():
        parser.error(f"--log: the folder {args.log.parent} does not exist")
    asyncio.run(_serve(args.port, args.log, args.account_sid, args.auth_token, args.latency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
