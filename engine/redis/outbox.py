"""The outbox in Redis: the messages the server sends on its own initiative, and the scripts
that hand them to senders at most once (the keys: engine.redis.store's key layout, under
{outbox}).

A message is written by the COMMIT that causes it (Change.outbox) or, for a reply whose webhook
could not carry it, by the CLAIM or TAKE_OVER that gives it to the REST API (engine.redis.store),
in the same script. Senders (engine.runtime.outbox, in every worker) `claim` due
messages with a lease, `begin` each part within the pace of its sender address (which also
marks it as being sent), and `finish` it with Twilio's answer. A part marked as being sent
whose sender died is never sent again on its own: the next claim finds it and keeps it as
unknown, for an operator to resend (`resend`) or not.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from engine.redis.multiplexer import NotSent
from engine.redis.scripts import Lua
from engine.redis.store import DELIVERY_TTL, OUTRANKING, Script, Store, shard_index

log = logging.getLogger("canvass.outbox")

PACE_WINDOW_MS = 1000  # the pace is what any one-second window of arrivals at Twilio holds
# Twilio's answers reach a worker one or two per turn of its event loop, and a script call
# costs its process as much as the Python of many answers: FINISH waits this long for more
# (a sender holds no request slot meanwhile, engine.runtime.outbox)
FINISH_LINGER = 0.005


def pace_key(sender: str) -> str:
    return f"cv:outbox:{{outbox}}:paced:{sender}"


def last_key(sender: str) -> str:
    return f"cv:outbox:{{outbox}}:paced-last:{sender}"


def pace_member(claimed: Claimed, part: int) -> str:
    """A request's entry in its sender's pace: the message, the part, and the try."""
    return f"{claimed.message.id}:{part}:{claimed.tries if part == claimed.part else 0}"


def new_id(channel: str, to: str) -> str:
    """A new message's id: random, and after a '.' the shard of its conversation (on a Redis
    Cluster, whose outbox holds it: engine.redis.store.ClusterLayout)."""
    return f"OB{os.urandom(10).hex()}.{shard_index(channel, to)}"


class Keys(NamedTuple):
    """One shard's outbox keys (engine.redis.store's key layout: the shard "" of one Redis is
    cv:outbox:{outbox}:*)."""

    due: str
    messages: str
    state: str
    unknown: str
    deliveries: str

    @classmethod
    def of(cls, store: Store, shard: str) -> Keys:
        prefix, (due, messages) = store.layout.outbox(shard), store.layout.outbox_queue(shard)
        return cls(due, messages, prefix + ":state", prefix + ":unknown", store.layout.deliveries(shard))

    def claimed(self, tag: str) -> str:
        """The ids the sender with that tag claimed from this shard and has not begun."""
        return self.due.removesuffix(":due") + ":claimed:" + tag


@dataclass(frozen=True)
class Message:
    """One message to send: one or more parts (each a Twilio request), sent in order.

    kind: start (a survey's first message, from the admin API), invite (a distribution's
    first message), link (a link distribution's invitation: no session behind it), reminder, reply (an inbound message's replies that its webhook could not
    carry), preview. `session_started` names the session it belongs to (its start time), so
    a message that fails can undo the start or take back the reminder."""

    id: str
    kind: str
    channel: str
    to: str
    origin: dict  # {"service": MG...} or {"from": address}
    parts: tuple[dict, ...]  # {"body": text} or {"content_sid": HX..., "variables": {...}}
    survey: str = ""
    version: str = ""
    session_started: float | None = None
    distribution: str | None = None
    extra: dict = field(default_factory=dict)

    def dumps(self) -> str:
        data = {"id": self.id, "kind": self.kind, "channel": self.channel, "to": self.to,
                "origin": self.origin, "parts": list(self.parts), "survey": self.survey,
                "version": self.version, "session_started": self.session_started}
        if self.distribution:
            data["distribution"] = self.distribution
        if self.extra:
            data["extra"] = self.extra
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def loads(cls, text: str) -> Message:
        data = json.loads(text)
        return cls(data["id"], data["kind"], data["channel"], data["to"], data["origin"],
                   tuple(data["parts"]), data.get("survey", ""), data.get("version", ""),
                   data.get("session_started"), data.get("distribution"), data.get("extra", {}))

    @property
    def sender(self) -> str:
        """The address Twilio sends it from (what the pace counts per)."""
        return self.origin.get("service") or self.origin.get("from") or ""


@dataclass(frozen=True)
class Claimed:
    """A message a sender holds: from which part on, how often that part was tried, and the
    sids of the parts already sent."""

    message: Message
    part: int
    tries: int
    sids: tuple[str, ...]


class ClaimCall(NamedTuple):
    due: str
    messages: str
    state: str
    unknown: str
    deliveries: str
    claimed: str  # the ids this sender claimed and has not begun
    now: str
    lease: str
    limit: str
    tag: str
    recover: str  # '1': the answer to a claim was lost; take back what is still claimed
    held: str  # how many of its messages the sender holds there (more ids in `claimed`: some are not its)
    ids: tuple[str, ...] = ()


class BeginCall(NamedTuple):
    due: str
    state: str
    claimed: str  # the ids this sender claimed and has not begun
    paces: tuple[str, ...]  # pace and last of each request's sender
    tag: str
    window_ms: str
    inflight_ms: str  # how long a request is counted before its answer (the request's time-out)
    requests: tuple[str, ...]  # six per request: BeginRequest


class BeginRequest(NamedTuple):
    id: str
    part: str
    rate: str  # '0': no pace
    gap_ms: str  # at least this between two requests of the sender (half its even spacing)
    member: str
    lease_until: str


class FinishCall(NamedTuple):
    due: str
    messages: str
    state: str
    unknown: str
    deliveries: str
    claimed: str  # the ids this sender claimed and has not begun
    per_answer: tuple[str, ...]  # two per answer: its sender's pace, its recipient's deliveries hash
    tag: str
    now: str
    ttl: str  # of a recipient's deliveries hash (DELIVERY_TTL)
    lease: str  # whole seconds: the sender's claimed ids are kept as long after a next part joins them
    queued_outranking: str  # OUTRANKING["queued"], comma-separated
    answers: tuple[str, ...]  # twelve per answer: FinishAnswer


class FinishAnswer(NamedTuple):
    id: str
    part: str
    parts: str
    outcome: str  # sent | retry | failed | unknown
    sid: str
    error_code: str
    reason: str
    retry_at: str
    member: str  # the request's entry in the pace ('' unpaced)
    channel: str  # the recipient's, for the `queued` note of a part Twilio took
    to: str
    distribution: str  # '' when none (else the message's, on the deliveries stream at its end)


class ReleaseCall(NamedTuple):
    due: str
    state: str
    claimed: str
    tag: str
    now: str
    begun: str  # the part begun and not asked for ('' when none was begun)
    ids: tuple[str, ...]


class ResendCall(NamedTuple):
    due: str
    messages: str
    state: str
    unknown: str
    id: str
    now: str


_DELIVERY_TTL = str(DELIVERY_TTL)
_QUEUED_OUTRANKING = ",".join(OUTRANKING["queued"])

OUTBOX_CLAIM = Lua("outbox_claim.lua", ClaimCall)
OUTBOX_BEGIN = Lua("outbox_begin.lua", BeginCall)
OUTBOX_FINISH = Lua("outbox_finish.lua", FinishCall)
OUTBOX_RESEND = Lua("outbox_resend.lua", ResendCall)
OUTBOX_RELEASE = Lua("outbox_release.lua", ReleaseCall)


def _state(text: str) -> tuple[str, int, int, str, tuple[str, ...]]:
    phase, part, tries, tag, sids = text.split("|", 4)
    return phase, int(part), int(tries), tag, tuple(sid for sid in sids.split(",") if sid)


def _waits(reply: list) -> list[int]:
    return [int(wait) for wait in reply]


def _noted(reply: list) -> list[bool]:
    return [bool(noted) for noted in reply]


class Batches:
    """Calls of one script made in the same turn of the event loop (or within `linger` seconds
    of the first), sent as one call (up to `most` items): a worker's senders begin and finish
    their requests in bursts (a claim's messages start together, Twilio's answers are read
    together), and one script call for a burst costs the sender's process a fraction of one
    per request. `run(items, common)` answers one result per item, in order; items whose
    `common` argument differs go in separate calls. `start(items, common)`, when given, writes
    the call at once and gives (the reply's future, what makes the results of the reply), or
    None (no live connection, a Redis Cluster): then `run`, as after a reply that says the
    connection was lost or the script is not loaded (run's way sends it again, or loads it)."""

    def __init__(self, run: Callable[[list, str], Awaitable[list]], most: int = 64, linger: float = 0.0,
                 start: Callable[[list, str], tuple[asyncio.Future, Callable[[Any], list]] | None] | None = None):
        self._run, self._most, self._linger, self._start = run, most, linger, start
        self._waiting: dict[str, list[tuple[object, asyncio.Future]]] = {}
        self._count = 0
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._calls: set[asyncio.Task] = set()

    def add(self, item: object, common: str) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        if self._timer is None:
            self._timer = loop.call_later(self._linger, self._flush) if self._linger else loop.call_soon(self._flush)
        future = loop.create_future()
        waiting = self._waiting.get(common)
        if waiting is None:
            self._waiting[common] = [(item, future)]
        else:
            waiting.append((item, future))
        self._count += 1
        if self._count >= self._most:  # a whole call's worth: no reason to wait for more
            self._flush()
        return future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiting, self._waiting, self._count = self._waiting, {}, 0
        for common, items in waiting.items():
            for first in range(0, len(items), self._most):
                chunk = items[first:first + self._most]
                started = None
                if self._start is not None:
                    try:
                        started = self._start([item for item, _ in chunk], common)
                    except Exception:  # (a defect: run's way answers each caller all the same)
                        log.exception("a batched call could not be written at once")
                if started is None:
                    self._call_later(chunk, common, went=False)
                else:
                    reply, results = started
                    reply.add_done_callback(functools.partial(self._replied, chunk, common, results))

    def _call_later(self, items: list[tuple[object, asyncio.Future]], common: str, went: bool) -> None:
        call = asyncio.ensure_future(self._call(items, common, went))
        self._calls.add(call)
        call.add_done_callback(self._calls.discard)

    def _replied(self, items: list[tuple[object, asyncio.Future]], common: str,
                 results: Callable[[Any], list], reply: asyncio.Future) -> None:
        failed = reply.exception()  # (nothing cancels it: nobody awaits it)
        if isinstance(failed, (RedisConnectionError, NoScriptError)):
            self._call_later(items, common, went=True)  # sent again on a new connection, or loaded first
            return
        if failed is None:
            try:
                self._answer(items, results(reply.result()))
                return
            except Exception as err:
                failed = err
        for _, future in items:  # every caller sees the failure (each may repeat its call)
            if not future.done():
                future.set_exception(failed)

    @staticmethod
    def _answer(items: list[tuple[object, asyncio.Future]], values: list) -> None:
        for (_, future), value in zip(items, values, strict=True):
            if not future.done():
                future.set_result(value)

    async def _call(self, items: list[tuple[object, asyncio.Future]], common: str, went: bool) -> None:
        """`went`: a first try was written already (its connection broke under it): it may have
        run, whatever this one says."""
        try:
            try:
                self._answer(items, await self._run([item for item, _ in items], common))
            except NotSent as err:
                if went:
                    raise RedisConnectionError(f"the call may have run: {err}") from None
                raise
        except Exception as err:  # every caller sees the failure (each may repeat its call)
            for _, future in items:
                if not future.done():
                    future.set_exception(err)


class PaceCall(NamedTuple):
    paces: tuple[str, ...]  # pace and last of each request's sender
    window_ms: str
    inflight_ms: str
    requests: tuple[str, ...]  # three per request: rate gap_ms member


class PacedCall(NamedTuple):
    paces: tuple[str, ...]  # the pace of each answered request's sender
    members: tuple[str, ...]


OUTBOX_PACE = Lua("outbox_pace.lua", PaceCall)
OUTBOX_PACED = Lua("outbox_paced.lua", PacedCall)


class Outbox:
    """The outbox's Redis side, for one sender (its `tag` names its claims).

    On one Redis the outbox is one shard (""). On a Redis Cluster every shard of conversations
    has its own (engine.redis.store.ClusterLayout): a claim looks at the shards where messages
    are due, and a sender's pace, kept in a slot of its own, is taken before BEGIN and noted
    after FINISH by scripts of its own (OUTBOX_PACE, OUTBOX_PACED)."""

    def __init__(self, store: Store):
        self.store = store
        self.layout = store.layout
        self.tag = os.urandom(6).hex()
        self._keys = {shard: Keys.of(store, shard) for shard in self.layout.shards}
        self._lost_claims: set[str] = set()  # the shards where a claim's answer was lost
        self.holding: set[str] = set()  # the ids this sender claimed and still works on
        self._lease = 60  # whole seconds of the last claim's lease (what FINISH keeps its claimed ids)
        self._claim = Script(store.mux, OUTBOX_CLAIM)
        self._begin = Script(store.mux, OUTBOX_BEGIN)
        self._finish = Script(store.mux, OUTBOX_FINISH)
        self._pace = Script(store.mux, OUTBOX_PACE)
        self._paced = Script(store.mux, OUTBOX_PACED)
        at_once = hasattr(store.mux, "send_now")  # (one Redis: a Cluster's calls go execute's way)
        self._begins = Batches(self._begin_all, start=self._begin_now if at_once else None)
        self._finishes = Batches(self._finish_all, linger=FINISH_LINGER, start=self._finish_now if at_once else None)
        self._paces = Batches(self._pace_all)
        self._answered = Batches(self._paced_all)
        self._resend = Script(store.mux, OUTBOX_RESEND)
        self._release = Script(store.mux, OUTBOX_RELEASE)

    def keys(self, message_id: str) -> Keys:
        """The keys of the shard whose outbox holds the message."""
        return self._keys[self.layout.message_shard(message_id)]

    async def claim(self, now: float, lease: float, limit: int,
                    ids: tuple[str, ...] = ()) -> tuple[list[Claimed], int]:
        """The messages claimed (due ones, or those of `ids`), and how many were found unknown
        (their sender died while asking Twilio)."""
        if len(self._keys) == 1:
            found = await self._claim_shard("", now, lease, limit, ids)
        elif ids:
            by_shard: dict[str, list[str]] = {}
            for id_ in ids:
                by_shard.setdefault(self.layout.message_shard(id_), []).append(id_)
            found = await self._claim_shards({shard: (len(wanted), tuple(wanted)) for shard, wanted in by_shard.items()},
                                             now, lease)
        else:
            due = await self.due_by_shard(now)
            shards = {shard for shard, count in due.items() if count} | self._lost_claims
            share = max(1, -(-limit // max(1, len(shards))))
            found = await self._claim_shards({shard: (min(share, max(1, due.get(shard, 0))), ()) for shard in shards},
                                             now, lease)
        claimed, unknown = [], 0
        for id_, message, state in found:
            if state == "unknown":
                unknown += 1
            elif id_ not in self.holding:  # a recovered claim this sender still works on
                self.holding.add(id_)
                _, part, tries, _, sids = _state(state)
                claimed.append(Claimed(Message.loads(message), part, tries, sids))
        return claimed, unknown

    async def _claim_shards(self, wanted: dict[str, tuple[int, tuple[str, ...]]], now: float,
                            lease: float) -> list:
        results = await asyncio.gather(*(self._claim_shard(shard, now, lease, limit, ids)
                                         for shard, (limit, ids) in wanted.items()), return_exceptions=True)
        failed = next((result for result in results if isinstance(result, BaseException)), None)
        found = [entry for result in results if not isinstance(result, BaseException) for entry in result]
        if failed is not None and not found:
            raise failed
        return found  # what the shards that answered gave (the others' claims come back)

    async def _claim_shard(self, shard: str, now: float, lease: float, limit: int, ids: tuple[str, ...]) -> list:
        keys = self._keys[shard]
        self._lease = math.ceil(lease)
        call = ClaimCall(keys.due, keys.messages, keys.state, keys.unknown, keys.deliveries,
                         keys.claimed(self.tag), repr(now), repr(lease), str(limit), self.tag,
                         "1" if shard in self._lost_claims else "", str(self._held_in(shard)), ids)
        try:
            found = await self._claim(call, repeat=False)  # a repeat would hide a lost answer
        except NotSent:
            raise  # it never ran
        except RedisError:
            self._lost_claims.add(shard)  # it may have claimed: the next claim takes those back
            raise
        if call.recover:  # it took back what was claimed; a claim that did not must not
            self._lost_claims.discard(shard)  # clear a loss learnt of while it went
        return found

    def _held_in(self, shard: str) -> int:
        """How many of the ids this sender holds are in the shard's outbox."""
        if len(self._keys) == 1:
            return len(self.holding)
        return sum(1 for id_ in self.holding if self.layout.message_shard(id_) == shard)

    def release(self, id_: str) -> None:
        """This sender is done with a message it claimed (sent, ended, or let go)."""
        self.holding.discard(id_)

    async def give_back(self, claimed: Claimed, now: float, begun: int | None = None) -> bool:
        """Queue a message this sender claimed again, due now (it stops): one it has not begun,
        or whose `begun` part (unpaced) it has not asked Twilio for. False when it no longer held
        it."""
        keys = self.keys(claimed.message.id)
        return bool(await self._release(ReleaseCall(
            keys.due, keys.state, keys.claimed(self.tag), self.tag, repr(now), "" if begun is None else str(begun),
            (claimed.message.id,))))

    def begin(self, claimed: Claimed, part: int, rate: int, lease_until: float,
              inflight: float = 11.0) -> Awaitable[int]:
        """0: ask Twilio for `part` now (it is marked as being sent); > 0: milliseconds to wait
        for the sender's pace; -1: the claim is lost. `inflight`: the seconds a request may
        take (it counts in the pace that long before its answer). (Not a coroutine: on one
        Redis, and unpaced on a Cluster, what is awaited is the batched call's own future.)"""
        message = claimed.message
        keys, inflight_ms = self.keys(message.id), str(int(inflight * 1000))
        if not rate:  # (the pace's keys unused: the shard's slot)
            request = BeginRequest(message.id, str(part), "0", "0", "", repr(lease_until))
            return self._begins.add((keys, (keys.due, keys.due), request), f"{inflight_ms}|{keys.due}")
        gap_ms, member = str(500 // rate), pace_member(claimed, part)
        if self.layout.cluster:
            return self._begin_paced_apart(claimed, part, rate, lease_until, keys, inflight_ms, gap_ms, member)
        paces = (pace_key(message.sender), last_key(message.sender))
        request = BeginRequest(message.id, str(part), str(rate), gap_ms, member, repr(lease_until))
        return self._begins.add((keys, paces, request), f"{inflight_ms}|{keys.due}")

    async def _begin_paced_apart(self, claimed: Claimed, part: int, rate: int, lease_until: float, keys: Keys,
                                 inflight_ms: str, gap_ms: str, member: str) -> int:
        """BEGIN on a Cluster, within a pace kept in a slot of its own (OUTBOX_PACE first)."""
        message, paces = claimed.message, (keys.due, keys.due)
        sender = message.sender
        wait = await self._paces.add(((pace_key(sender), last_key(sender)), (str(rate), gap_ms, member)), inflight_ms)
        if wait:  # held back: the lease renewed (BEGIN's rate '-1'), as one Redis's BEGIN does
            renew = BeginRequest(message.id, str(part), "-1", gap_ms, member, repr(lease_until))
            kept = await self._begins.add((keys, paces, renew), f"{inflight_ms}|{keys.due}")
            # (0: the part was marked by an earlier try whose answer was lost; its request
            # has not gone, and waits for the pace as well)
            return wait if kept >= 0 else kept
        request = BeginRequest(message.id, str(part), "0", gap_ms, member, repr(lease_until))
        return await self._begins.add((keys, paces, request), f"{inflight_ms}|{keys.due}")

    def _begin_call(self, requests: list, inflight_ms: str) -> BeginCall:
        keys = requests[0][0]  # (one shard's: Batches groups by `common`, and these by shard)
        return BeginCall(
            keys.due, keys.state, keys.claimed(self.tag), tuple(key for _, paces, _ in requests for key in paces), self.tag,
            str(PACE_WINDOW_MS), inflight_ms.partition("|")[0],
            tuple(arg for _, _, request in requests for arg in request))

    async def _begin_all(self, requests: list, inflight_ms: str) -> list[int]:
        return _waits(await self._begin(self._begin_call(requests, inflight_ms)))

    def _begin_now(self, requests: list, inflight_ms: str) -> tuple[asyncio.Future, Callable] | None:
        reply = self._begin.start(self._begin_call(requests, inflight_ms))
        return None if reply is None else (reply, _waits)

    async def _pace_all(self, requests: list, inflight_ms: str) -> list[int]:
        return _waits(await self._pace(PaceCall(
            tuple(key for paces, _ in requests for key in paces), str(PACE_WINDOW_MS), inflight_ms,
            tuple(arg for _, request in requests for arg in request))))

    def finish(self, claimed: Claimed, part: int, outcome: str, now: float, *, sid: str = "",
               error_code: int | None = None, reason: str = "", retry_at: float | None = None,
               paced: bool = True) -> Awaitable[bool]:
        """Note Twilio's answer for a part being sent: True when noted, False when this sender
        no longer held it. (Not a coroutine, as `begin`.)"""
        message = claimed.message
        member = pace_member(claimed, part) if paced else ""
        keys = self.keys(message.id)
        answer = FinishAnswer(
            message.id, str(part), str(len(message.parts)), outcome, sid,
            "" if error_code is None else str(error_code), reason[:200],
            repr(retry_at) if retry_at is not None else "", "" if self.layout.cluster else member,
            message.channel, message.to, message.distribution or "")
        pace = keys.due if self.layout.cluster or not member else pace_key(message.sender)  # (unused unpaced)
        answer_keys = (pace, self.layout.delivery(message.channel, message.to))
        noted = self._finishes.add((keys, answer_keys, answer, now), keys.due)
        if member and self.layout.cluster:
            return self._paced_apart(noted, message.sender, member)
        return noted

    async def _paced_apart(self, noted: Awaitable[bool], sender: str, member: str) -> bool:
        """On a Cluster: a request that was noted is noted in its pace's own slot too."""
        if await noted:
            await self._answered.add((pace_key(sender), member), "")
            return True
        return False

    def _finish_call(self, answers: list) -> FinishCall:
        # one shard's answers (Batches groups them by its due key), noted at the latest of
        # their times: they were all read within FINISH_LINGER
        keys = answers[0][0]
        return FinishCall(
            keys.due, keys.messages, keys.state, keys.unknown, keys.deliveries, keys.claimed(self.tag),
            tuple(key for _, answer_keys, _, _ in answers for key in answer_keys), self.tag,
            repr(max(now for *_, now in answers)), _DELIVERY_TTL, str(self._lease), _QUEUED_OUTRANKING,
            tuple(arg for _, _, answer, _ in answers for arg in answer))

    async def _finish_all(self, answers: list, _: str) -> list[bool]:
        return _noted(await self._finish(self._finish_call(answers)))

    def _finish_now(self, answers: list, _: str) -> tuple[asyncio.Future, Callable] | None:
        reply = self._finish.start(self._finish_call(answers))
        return None if reply is None else (reply, _noted)

    async def _paced_all(self, answered: list, _: str) -> list:
        count = await self._paced(PacedCall(tuple(pace for pace, _ in answered),
                                            tuple(member for _, member in answered)))
        return [count] * len(answered)

    async def enqueue(self, message: Message, due: float) -> None:
        """Queue a message no script wrote: both writes at once."""
        keys = self.keys(message.id)
        async with self.store.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.messages, message.id, message.dumps())
            pipe.zadd(keys.due, {message.id: due})
            await pipe.execute()

    async def unknown(self) -> list[dict]:
        """The messages whose outcome is unknown, oldest first: {id, message, part, sids,
        reason, at}."""
        found = []
        for kept in await asyncio.gather(*(self.store.mux.execute("HGETALL", keys.unknown)
                                           for keys in self._keys.values())):
            for id_, raw in zip(kept[::2], kept[1::2], strict=True):
                entry = json.loads(raw)
                message = Message.loads(entry["message"])
                found.append({"id": id_, "kind": message.kind, "channel": message.channel, "to": message.to,
                              "survey": message.survey, "distribution": message.distribution,
                              "parts": len(message.parts), "unknown_part": entry["part"],
                              "sids": [sid for sid in entry["sids"].split(",") if sid],
                              "reason": entry["reason"], "at": entry["at"]})
        return sorted(found, key=lambda entry: entry["at"])

    async def resend(self, id_: str, now: float) -> bool:
        """Queue an unknown message again (an operator asked); False when there is none."""
        keys = self.keys(id_)
        return bool(await self._resend(ResendCall(keys.due, keys.messages, keys.state, keys.unknown, id_, repr(now))))

    async def pending(self) -> int:
        """How many messages wait in the outbox (queued, held or being sent)."""
        return sum(await asyncio.gather(*(self.store.mux.execute("ZCARD", keys.due) for keys in self._keys.values())))

    async def due_by_shard(self, now: float) -> dict[str, int]:
        """How many messages are due (not held, not claimed) in each shard's outbox."""
        counts = await asyncio.gather(*(self.store.mux.execute("ZCOUNT", keys.due, "-inf", repr(now))
                                        for keys in self._keys.values()))
        return dict(zip(self._keys, counts, strict=True))
