"""The senders: every worker drains the outbox (engine.redis.outbox) through Twilio.

Each message goes at most once. A sender claims due messages with a lease, and before each
request it asks OUTBOX_BEGIN, which keeps the pace of the message's sender address across
every worker and server and marks the part as being sent. Then Twilio's answer decides:

- a message id (201): the part is sent; the next part follows, or the message is done;
- 429 / 20429 or a 5xx, or Twilio could not be reached at all (the connection was refused,
  so the request never went): queued again after a backoff, up to MAX_TRIES;
- any other refusal (21610 unsubscribed, 21211 invalid number...): failed, for good;
- no answer after the request went (a timeout, a dropped connection): unknown. Twilio has no
  idempotency key for creating messages, so the message is kept as unknown, reported, and
  sent again only when an operator asks (POST /admin/outbox/{id}/resend).

What a message's end means for its conversation (a start that failed is undone, a reminder
taken back, 21610 opts the number out) is the Service's: `on_final`, called for a message that
failed or ended unknown (one sent means nothing more to it).

The drain loop's messages go out through lanes (IN_FLIGHT + AHEAD coroutines, each sending one message
after another) rather than a task each; a lane leaves the note of a message's last answer to
that note's own completion and goes on to the next message. A start's own messages go at once
(`send_now`), before the lanes' at the next free slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from engine.redis.outbox import Claimed, Message, Outbox, new_id
from engine.runtime.twilio import SEND_TIMEOUT, Origin, SandboxSender, Sender, SendFailed

log = logging.getLogger("canvass.outbox")

LEASE = 60.0  # seconds a claimed message stays with its sender before others may take it
HOLD = 5.0  # seconds a start's own messages wait for its worker before any sender takes them
INTERVAL = 0.25  # seconds between looks at the outbox when it had nothing due
IN_FLIGHT = 64  # requests one worker has at Twilio at once (or waiting for the pace to let them go)
# Unpaced, a lane takes its request slot once its part is begun, and up to AHEAD lanes beyond
# IN_FLIGHT begin theirs while every slot is at Twilio: the fsynced BEGIN is then out of the
# requests' way (bench.sending: about a tenth more messages a second without Twilio's latency).
# A worker that dies leaves those (begun, not yet asked for) unknown, as it leaves the ones at
# Twilio: never sent twice; one that stops gives them back. One that waited for its slot
# longer than RENEW_AFTER (a start's messages go first, a long message keeps its slot, Twilio
# may be slow) is begun again before it goes: its lease renewed, so that it covers the request
# and the note of its answer as when no wait came between, or its claim found gone (another
# sender's claim kept it as unknown), and then it is not sent. Paced, the slot comes first:
# the pace counts a request from its BEGIN, for at most its timeout.
AHEAD = 16
RENEW_AFTER = 1.0  # seconds
# Without a pace (CANVASS_PACING=off) a worker holds up to HELD claimed messages Twilio has not
# answered yet: those beyond its slots wait for one (claimed, or begun as above). With a pace it holds
# IN_FLIGHT: more would only wait for the pace, and outlast their lease. Besides those, up to
# HELD answered messages may wait for their notes to land; more, and it claims no more.
# A claim takes all the worker has room for: claims go one after another, each waiting for an
# fsynced Redis pass (a few ms under load), so a smaller batch would cap the rate at that batch
# per claim, and a worker holding fewer would leave lanes idle through a slow pass
# (bench.sending's drains, paired: 3 x IN_FLIGHT sent 5-8% more messages a second than 2 x).
# The messages queued behind the lanes wait unrenewed, so a worker holds no more of them than
# its lanes start within QUEUE_WAIT at their pace (_holds; LANE_AVERAGING: the weight of each
# message's time in its average): when Twilio is slow, or messages are long, it holds fewer,
# so that those waiting for a lane start well within their lease.
HELD = 3 * IN_FLIGHT
QUEUE_WAIT = LEASE / 4
LANE_AVERAGING = 0.1
PATIENCE = 20.0  # seconds a sender repeats a note about a message while Redis does not answer
MAX_TRIES = 8  # tries of one part that Twilio turned away for now (429, 5xx), then failed
BACKOFF = (1.0, 60.0)  # the first and the longest wait before a retry (doubling)
PHONE_RATE = 3  # messages per second from one phone number (the carriers' figure)
ALPHA_RATE = 10  # from an alphanumeric sender ID


@dataclass(frozen=True)
class Result:
    """How a message ended (or paused): sent, failed, unknown, retry (queued again), lost (its
    claim went to another sender)."""

    state: str
    sids: tuple[str, ...] = ()
    code: int | None = None
    reason: str = ""


OnFinal = Callable[[Message, Result], Awaitable[None]]  # for a message that failed or ended unknown


class PacingError(ValueError):
    """A pacing setting Canvass cannot read."""


_PACE_ITEM = re.compile(r"\s*([^=\s]+)\s*=\s*(\d+)\s*")


class Pacing:
    """Messages per second per sender address: PHONE_RATE for a phone number (and, unless
    told otherwise, a Messaging Service), ALPHA_RATE for an alphanumeric sender ID, or what
    the setting says: "off" (no pace), or comma-separated `sender=rate` items, where the
    sender is an address, a Messaging Service sid, or `phone` / `alpha` for the defaults."""

    def __init__(self, spec: str = ""):
        self.off = spec.strip().lower() == "off"
        self.phone, self.alpha, self.senders = PHONE_RATE, ALPHA_RATE, {}
        if self.off or not spec.strip():
            return
        for item in spec.split(","):
            match = _PACE_ITEM.fullmatch(item)
            if match is None or int(match[2]) < 1:
                raise PacingError(f"pacing item '{item.strip()}' is not sender=messages per second "
                                  "(a whole number from 1), e.g. phone=3,alpha=10,+15551234567=5")
            sender, rate = match[1], int(match[2])
            if sender == "phone":
                self.phone = rate
            elif sender == "alpha":
                self.alpha = rate
            else:
                self.senders[sender.removeprefix("whatsapp:")] = rate

    def rate(self, sender: str) -> int:
        """Messages per second for `sender` (0: no pace)."""
        if self.off:
            return 0
        address = sender.removeprefix("whatsapp:")
        if address in self.senders:
            return self.senders[address]
        return self.phone if address.startswith(("+", "MG")) or address.isdigit() else self.alpha


class Slots:
    """A worker's request slots (IN_FLIGHT): a semaphore whose `first` waiters, a start's own
    messages, are served before the others (the outbox's, which may be many and paced). Once
    stopped, it gives none: its waiters, and any later, are told at once."""

    def __init__(self, count: int):
        self._free = count
        self._waiting: tuple[deque[asyncio.Future], deque[asyncio.Future]] = (deque(), deque())
        self._stopped = False

    async def acquire(self, first: bool = False) -> bool:
        """True: a slot is taken; False: the senders stop, and none is."""
        if self._stopped:
            return False
        if self._free > 0 and not any(self._waiting):
            self._free -= 1
            return True
        slot = asyncio.get_running_loop().create_future()
        queue = self._waiting[0 if first else 1]
        queue.append(slot)
        try:
            return await slot
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled() and slot.result():  # given, then cancelled: pass it on
                self.release()
            elif slot in queue:  # (a release in the same turn passed over it already)
                queue.remove(slot)
            raise

    def release(self) -> None:
        for queue in self._waiting:
            while queue:
                slot = queue.popleft()
                if not slot.done():
                    slot.set_result(True)
                    return
        self._free += 1

    def stop(self) -> None:
        self._stopped = True
        for queue in self._waiting:
            while queue:
                slot = queue.popleft()
                if not slot.done():
                    slot.set_result(False)


class Senders:
    """This worker's senders: a loop that drains due messages, and `send_now` for a start's own."""

    def __init__(self, outbox: Outbox, sender: Sender | SandboxSender, pacing: Pacing,
                 clock: Callable[[], float], on_final: OnFinal,
                 on_sent: Callable[[Message, int], None] | None = None,
                 request_timeout: float = SEND_TIMEOUT):
        self.outbox, self.sender, self.pacing, self.clock = outbox, sender, pacing, clock
        self.on_final, self.on_sent = on_final, on_sent
        self.on_retry: Callable[[Message], None] | None = None
        self.request_timeout = request_timeout  # a request counts in the pace this long before its answer
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._slots = Slots(IN_FLIGHT)
        # The drain loop's messages go to lanes (see above): a task per message, and a wait for
        # each note, cost a tenth of a message's work (bench.sending)
        self._queue: deque[Claimed] = deque()  # claimed, waiting for a lane
        self._idle: deque[asyncio.Future] = deque()  # lanes waiting for a message
        self._lanes: set[asyncio.Task] = set()
        self._lane_seconds = 0.0  # a lane's time per message lately (none yet: 0), for _holds
        self._lane_started: dict[str, float] = {}  # the lanes delivering a message: when each took it
        self._unanswered = 0  # the lanes' messages before their last answer (queued, handed to a lane, sending)
        self._answered = asyncio.Event()  # a lane's message got its last answer: room to claim
        self._noting: set[asyncio.Future] = set()  # the lanes' last notes not yet landed, and what follows them
        self._redis_down = False
        self._claiming = 0  # claims under way (what they claim is neither due nor queued yet)
        self._sending_now = 0  # send_now calls under way

    def wake(self) -> None:
        """Something was queued: look now rather than at the next interval."""
        self._wake.set()

    async def run(self) -> None:
        while not self._stop.is_set():
            claimed = 0
            self._wake.clear()  # (before the claim: a wake while it is under way brings the next one at once)
            try:
                claimed = await self._drain_once()
                if self._redis_down:
                    self._redis_down = False
                    log.info("Redis is reachable again; the outbox is drained again")
            except RedisError as err:
                if not self._redis_down:
                    self._redis_down = True
                    # info: the timers' sweeper warns of the same outage
                    log.info("the outbox waits until Redis is reachable: %s", err)
            except Exception:
                log.exception("draining the outbox failed")
            if claimed:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), INTERVAL)

    async def _drain_once(self) -> int:
        # what the worker holds counts until its last request is answered: noting answers
        # takes no slot, and must not keep the next messages from being claimed
        free = (self._holds() if self.pacing.off else IN_FLIGHT) - self._unanswered
        if free <= 0 or len(self._noting) >= HELD:
            self._answered.clear()
            await self._answered.wait()
            return 1
        self._claiming += 1
        try:
            claimed, unknown = await self.outbox.claim(self.clock(), LEASE, free)
        finally:
            self._claiming -= 1
        if unknown:
            log.warning("%d outbound messages were being sent when their sender stopped: kept as "
                        "unknown (GET /admin/outbox), not sent again", unknown)
        for message in claimed:
            self._send_later(message)
        return len(claimed)

    def _holds(self) -> int:
        """How many messages Twilio has not answered this worker holds at most, unpaced: HELD,
        or fewer when its lanes are slow (see QUEUE_WAIT), never fewer than its lanes. Their
        pace is the slower of their recent average and the oldest message a lane is still on
        (Twilio turning slow shows there first); before any is known, 2 x IN_FLIGHT."""
        lanes = min(HELD, IN_FLIGHT + AHEAD)
        if self._lane_seconds <= 0:
            return max(lanes, min(HELD, 2 * IN_FLIGHT))
        seconds = self._lane_seconds
        if self._lane_started:  # (in the order the lanes took them: the first is the oldest)
            oldest = next(iter(self._lane_started.values()))
            seconds = max(seconds, asyncio.get_running_loop().time() - oldest)
        return max(lanes, min(HELD, lanes + int(lanes * QUEUE_WAIT / seconds)))

    def _send_later(self, claimed: Claimed) -> None:
        """Hand a claimed message to an idle lane, or queue it for the next free one."""
        self._unanswered += 1
        while self._idle:
            lane = self._idle.popleft()
            if not lane.done():
                lane.set_result(claimed)
                return
        self._queue.append(claimed)
        if len(self._lanes) < IN_FLIGHT + AHEAD:
            lane = asyncio.create_task(self._lane())
            self._lanes.add(lane)
            lane.add_done_callback(self._lanes.discard)

    async def _lane(self) -> None:
        """Deliver the drain loop's messages one after another: a lane holds a slot while it
        sends, and leaves the noting of the last answer to that note's own completion."""
        loop = asyncio.get_running_loop()
        while True:
            if self._queue:
                claimed = self._queue.popleft()
            else:
                if self._stop.is_set():
                    break
                waiting = loop.create_future()
                self._idle.append(waiting)
                claimed = await waiting
                if claimed is None:  # the senders stop
                    break
            started = self._lane_started[claimed.message.id] = loop.time()
            try:
                attempt = await self._parts(claimed, False, True)  # (as _attempt, one coroutine fewer)
            except RedisError as err:
                attempt = self._paused(claimed, err)
            except BaseException as err:  # a defect, or the lane cancelled: let the message go
                self.outbox.release(claimed.message.id)
                if not isinstance(err, Exception):
                    raise
                log.exception("sending outbound message %s failed", claimed.message.id)
                continue
            finally:
                self._lane_started.pop(claimed.message.id, None)
            took = loop.time() - started  # (its wait for a slot included: the lanes' pace)
            self._lane_seconds += (took - self._lane_seconds) * LANE_AVERAGING if self._lane_seconds else took
            self._end_later(claimed, attempt)
        # gone from the lanes at once: a message queued in this same turn gets a lane of its own
        self._lanes.discard(asyncio.current_task())

    def _answered_one(self) -> None:
        self._unanswered -= 1
        self._answered.set()

    async def send_now(self, ids: list[str]) -> dict[str, Result]:
        """Send these messages (a start's own, held for this worker) now; how each ended."""
        if not ids:
            return {}
        self._sending_now += 1
        try:
            claimed, _ = await self.outbox.claim(self.clock(), LEASE, len(ids), tuple(ids))
            own = [found for found in claimed if found.message.id in ids]
            for taken_back in (found for found in claimed if found.message.id not in ids):
                self._send_later(taken_back)  # a lost claim's, which this claim recovered
            results = await asyncio.gather(*(self.deliver(message, first=True) for message in own))
        finally:
            self._sending_now -= 1
        return {message.message.id: result for message, result in zip(own, results, strict=True)}

    async def deliver(self, claimed: Claimed, first: bool = False) -> Result:
        """Send the claimed message's parts in order; how it ended, once noted and once its end
        was acted on. `first`: its requests take the next free slots, before the outbox's (a
        start's own message)."""
        try:
            result, note = await self._attempt(claimed, first)
            if note is not None:
                try:
                    await self._finish_now(claimed, *note)
                except RedisError:
                    result = await self._note_patiently(claimed, result, note)
        except BaseException:  # a defect, or cancelled: the message is let go all the same
            self.outbox.release(claimed.message.id)
            raise
        await self._end(claimed, result, note)
        return result

    async def _attempt(self, claimed: Claimed, first: bool) -> tuple[Result, tuple | None]:
        """How a message sent now ended, and the note of its last part's answer still to make
        (part, outcome, details), if any. (A lane calls _parts itself, its message counted.)"""
        try:
            return await self._parts(claimed, first, False)
        except RedisError as err:
            return self._paused(claimed, err)

    @staticmethod
    def _paused(claimed: Claimed, err: RedisError) -> tuple[Result, None]:
        # the claim's lease brings it back (or, mid-request, makes it unknown)
        log.warning("outbound message %s paused: Redis failed: %s", claimed.message.id, err)
        return Result("lost", claimed.sids, reason=str(err)), None

    def _end_later(self, claimed: Claimed, attempt: tuple[Result, tuple | None]) -> None:
        """A lane's message: its last note made without the lane, which goes on to the next
        message; what follows runs when it lands (a task only when Redis failed it, or the
        end means something for the conversation)."""
        result, note = attempt
        if note is None:
            self._ended(claimed, result, None)
            return
        try:
            noting = asyncio.ensure_future(self._finish_now(claimed, *note))  # (a future already on one Redis)
        except Exception:
            log.exception("noting outbound message %s failed", claimed.message.id)
            self._ended(claimed, Result("lost", result.sids, reason="its note failed"), None)
            return
        self._noting.add(noting)
        noting.add_done_callback(functools.partial(self._noted, claimed, result, note))

    def _noted(self, claimed: Claimed, result: Result, note: tuple, noting: asyncio.Future) -> None:
        self._noting.discard(noting)
        self._answered.set()  # (room for a claim, if the notes under way were what held it)
        if noting.cancelled():  # the senders stopped first: the next claim finds it (being sent: unknown)
            log.info("outbound message %s: its %s was not noted before the senders stopped",
                     claimed.message.id, result.state)
            self._ended(claimed, Result("lost", result.sids, reason="the senders stopped"), None)
            return
        failed = noting.exception()
        if isinstance(failed, RedisError):  # again, patiently, in a task of its own
            self._later(self._end_patiently(claimed, result, note))
            return
        if failed is not None:
            log.error("noting outbound message %s failed: %r", claimed.message.id, failed)
            result, note = Result("lost", result.sids, reason=repr(failed)), None
        self._ended(claimed, result, note)
        if result.state in ("failed", "unknown"):
            self._later(self._final(claimed.message, result))

    async def _end_patiently(self, claimed: Claimed, result: Result, note: tuple) -> None:
        await self._end(claimed, await self._note_patiently(claimed, result, note), note)

    async def _end(self, claimed: Claimed, result: Result, note: tuple | None) -> None:
        """_ended, then what the end means for the conversation (failed, unknown), awaited."""
        self._ended(claimed, result, note)
        if result.state in ("failed", "unknown"):
            await self._final(claimed.message, result)

    async def _note_patiently(self, claimed: Claimed, result: Result, note: tuple) -> Result:
        try:
            await self._patiently(self._finish_now, claimed, *note)
        except RedisError as err:
            # the claim's lease brings it back (or, mid-request, makes it unknown)
            log.warning("outbound message %s paused: Redis failed: %s", claimed.message.id, err)
            return Result("lost", result.sids, reason=str(err))
        return result

    def _later(self, work: Awaitable) -> None:
        task = asyncio.ensure_future(work)
        self._noting.add(task)
        task.add_done_callback(self._noting.discard)

    def _ended(self, claimed: Claimed, result: Result, note: tuple | None) -> None:
        """The sender is done with the message: let go, and, when its last note landed (`note`
        given), counted."""
        self.outbox.release(claimed.message.id)
        try:
            if result.state == "sent" and note is not None and self.on_sent is not None:
                self.on_sent(claimed.message, note[0])
            elif result.state == "retry" and self.on_retry is not None:
                self.on_retry(claimed.message)
        except Exception:
            log.exception("counting outbound message %s failed", claimed.message.id)

    async def _final(self, message: Message, result: Result) -> None:
        try:
            await self.on_final(message, result)
        except Exception:
            log.exception("after outbound message %s ended %s", message.id, result.state)

    async def _parts(self, claimed: Claimed, first: bool, counted: bool) -> tuple[Result, tuple | None]:
        # A slot is taken before a paced part is begun, after an unpaced one is (AHEAD), and
        # kept until Twilio answered the message's last part: that answer is noted without it
        # (by the caller), while a next part goes on with it, right after the one before.
        held = False
        try:
            message, sids = claimed.message, list(claimed.sids)
            rate = self.pacing.rate(message.sender)
            if rate:  # (none given: the senders stop, and the check below gives the message back)
                held = await self._slots.acquire(first)
            origin = Origin(messaging_service_sid=message.origin.get("service"), from_=message.origin.get("from"))
            for part in range(claimed.part, len(message.parts)):
                while True:
                    if self._stop.is_set() and part == claimed.part:  # not begun: for the other senders
                        await self._give_back(claimed)
                        return Result("lost", tuple(sids), reason="the senders stopped"), None
                    begun = time.monotonic()  # (the lease runs from about here)
                    try:
                        wait = await self._begin(claimed, part, rate)
                    except RedisError:
                        wait = await self._patiently(self._begin, claimed, part, rate)
                    if wait < 0:
                        return Result("lost", tuple(sids)), None
                    if wait == 0:
                        break
                    await asyncio.sleep(wait / 1000)
                if not held:  # unpaced, begun first (AHEAD)
                    try:
                        held = await self._slots.acquire(first)
                    except asyncio.CancelledError:  # (a start's caller gone): never asked for
                        self._later(self._give_back(claimed, part))
                        raise
                    if not held:  # the senders stop: never asked for, so given back
                        await self._give_back(claimed, part)
                        return Result("lost", tuple(sids), reason="the senders stopped"), None
                    if time.monotonic() - begun > RENEW_AFTER:  # a long wait: BEGIN again, before it goes
                        try:
                            wait = await self._begin(claimed, part, rate)  # (renewing its lease)
                        except RedisError:
                            wait = await self._patiently(self._begin, claimed, part, rate)
                        if wait < 0:
                            return Result("lost", tuple(sids)), None
                spec = message.parts[part]
                try:
                    outcome: str | SendFailed = await self.sender.send(
                        message.channel, message.to, origin, spec.get("body"), spec.get("content_sid"),
                        spec.get("variables"), distribution=message.distribution)
                except SendFailed as err:
                    outcome = err
                paced = rate > 0
                if isinstance(outcome, str):
                    sids.append(outcome)
                    note = (part, "sent", {"sid": outcome, "paced": paced})  # noting it queued
                    if part + 1 == len(message.parts):
                        return Result("sent", tuple(sids)), note
                    await self._finish(claimed, *note)  # the next part goes with the same slot
                    if self.on_sent is not None:
                        self.on_sent(message, part)
                    continue
                err: SendFailed = outcome
                reason = f"{err}" + (f" (error {err.code})" if err.code else "")
                if err.unknown:
                    log.warning("outbound message %s to %s:%s: %s; kept as unknown, not sent again",
                                message.id, message.channel, message.to, reason)
                    return (Result("unknown", tuple(sids), err.code, reason),
                            (part, "unknown", {"reason": reason, "paced": paced}))
                tries = claimed.tries if part == claimed.part else 0
                if err.retryable and tries + 1 < MAX_TRIES:
                    wait = min(BACKOFF[1], BACKOFF[0] * 2 ** tries)
                    retry_at = self.clock() + max(wait, err.retry_after or 0.0)  # Twilio's Retry-After
                    self.wake_at(retry_at)
                    return (Result("retry", tuple(sids), err.code, reason),
                            (part, "retry", {"error_code": err.code, "reason": reason, "retry_at": retry_at,
                                             "paced": paced}))
                return (Result("failed", tuple(sids), err.code, reason),
                        (part, "failed", {"error_code": err.code, "reason": reason, "paced": paced}))
            return Result("sent", tuple(sids)), None
        finally:
            # the last request was answered (or none goes): the slot is free, the note is the caller's
            if held:
                self._slots.release()
            if counted:
                self._answered_one()

    async def _give_back(self, claimed: Claimed, begun: int | None = None) -> None:
        """Back to the other senders at once (when Redis does not answer, its lease brings it
        back, or, `begun` part, leaves it unknown)."""
        with contextlib.suppress(RedisError):
            await self.outbox.give_back(claimed, self.clock(), begun)

    def _begin(self, claimed: Claimed, part: int, rate: int) -> Awaitable[int]:
        return self.outbox.begin(claimed, part, rate, self.clock() + LEASE, self.request_timeout + 1.0)

    async def _finish(self, claimed: Claimed, part: int, outcome: str, details: dict) -> None:
        # a repeat after a lost answer finds the part no longer being sent and changes nothing
        try:
            await self._finish_now(claimed, part, outcome, details)
        except RedisError:
            await self._patiently(self._finish_now, claimed, part, outcome, details)

    def _finish_now(self, claimed: Claimed, part: int, outcome: str, details: dict) -> Awaitable[bool]:
        return self.outbox.finish(claimed, part, outcome, self.clock(), **details)

    @staticmethod
    async def _patiently(call: Callable[..., Awaitable], *args):
        """`call(*args)` again, after a first try Redis did not answer, for up to PATIENCE
        seconds: what a sender notes about a message it holds must land, or the message waits
        out its lease (or, once asked of Twilio, ends unknown). Both scripts it repeats know a
        repeat of themselves. (The first try is its caller's, made without this coroutine:
        every message makes two.)"""
        deadline = asyncio.get_running_loop().time() + PATIENCE
        while True:
            await asyncio.sleep(0.25)
            try:
                return await call(*args)
            except RedisError:
                if asyncio.get_running_loop().time() > deadline:
                    raise

    async def idle(self) -> bool:
        """Nothing is being sent by this worker and nothing in the outbox is due."""
        if self._unanswered or self._lane_started or self._noting or self._claiming or self._sending_now:
            return False
        return not any((await self.outbox.due_by_shard(self.clock())).values())

    def wake_at(self, when: float) -> None:
        """Look again at `when` (a retry's time), not only at the next interval."""
        delay = max(0.0, when - self.clock())
        asyncio.get_running_loop().call_later(delay, self._wake.set)

    async def stop(self, task: asyncio.Task, grace: float = 10.0) -> None:
        """Stop claiming; let the messages being sent finish (a request cut off mid-way would
        leave its message unknown)."""
        self._stop.set()
        self._slots.stop()  # (a message waiting for a slot is given back at once)
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, grace)
        while self._idle:
            lane = self._idle.popleft()
            if not lane.done():
                lane.set_result(None)
        # the lanes give back what is still queued; the notes of the last answers land, and
        # what they start (a note made again, a failed start undone) runs, within one grace
        loop = asyncio.get_running_loop()
        until = loop.time() + grace
        while (under_way := self._lanes | self._noting) and loop.time() < until:
            await asyncio.wait(under_way, timeout=until - loop.time(), return_when=asyncio.FIRST_COMPLETED)
        for _ in range(3):  # (a cancelled note may start no more than one more round)
            if not (under_way := self._lanes | self._noting):
                break
            for pending in under_way:
                pending.cancel()
            await asyncio.gather(*under_way, return_exceptions=True)
        while self._queue:  # (queued after the last lane left)
            claimed = self._queue.popleft()
            self._unanswered -= 1
            await self._give_back(claimed)
            self.outbox.release(claimed.message.id)


def message_for(kind: str, channel: str, to: str, origin: Origin, texts: list[str],
                template: str | None, variables: dict | None, *, survey: str = "", version: str = "",
                session_started: float | None = None, distribution: str | None = None) -> Message:
    """A message to queue: the texts, one part each, or (outside the WhatsApp window) the template."""
    if template:
        parts = ({"content_sid": template, "variables": variables or {}},)
    else:
        parts = tuple({"body": text} for text in texts)
    where = {"service": origin.messaging_service_sid} if origin.messaging_service_sid else {"from": origin.from_}
    return Message(new_id(channel, to), kind, channel, to, where, parts, survey, version, session_started, distribution)
