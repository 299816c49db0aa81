"""Commits whose outcome a request could not learn, settled in the background.

A COMMIT whose answer never came (Redis slow past PATIENT_TIMEOUT, or unreachable) may have
landed. The request that sent it answers without waiting longer (a webhook 503, a start's
503 `outcome_unknown`, a timer left to its lease) and hands the commit here. Settling repeats
the identical commit (Store.recommit) until Redis answers: the answer is final (see
CommitUnknown). When it landed, the step's messages are sent (`landed`); when it did not,
nothing is: the message, the start or the timer comes again from outside.

What survives: a Redis that is slow, restarted or away for up to SETTLE_FOR; and, whatever
happens to this process, the messages of a start or a timer, which the commit itself wrote
into the outbox (engine.runtime.outbox sends them from any worker). What does not: this process
being killed (or stopped past CLOSE_GRACE) while an inbound message's commit is unsettled and
Twilio does not deliver the message again; its reply is then never sent (the README says what
a respondent sees).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisError

from engine.redis.store import NONCE_TTL, Committed, CommitUnknown, ReadUnknown, Store

log = logging.getLogger("canvass.settling")

SETTLE_PAUSE = 1.0  # seconds between tries while Redis does not answer
# A repeated commit is sure to know itself for NONCE_TTL (by its mark, see engine.redis.store):
# stop well before that, or a start that landed could pass for one that did not.
SETTLE_FOR = NONCE_TTL - 60
CLOSE_GRACE = 2.0  # seconds a stopping server waits for unsettled commits

Landed = Callable[[], Awaitable[None]]
QueueOf = Callable[[list[str]], tuple[str, float, str] | None]
T = TypeVar("T")


async def repeated(call: Callable[[], Awaitable[T]]) -> T:
    """The answer of `call`, a script that knows a repeat of itself, asked again SETTLE_PAUSE
    apart while Redis does not answer, for up to SETTLE_FOR (then its RedisError)."""
    deadline = time.monotonic() + SETTLE_FOR
    while True:
        try:
            return await call()
        except RedisError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(SETTLE_PAUSE)


async def _then(landed: Landed | None, failure: str) -> None:
    """Run `landed` (a commit's messages to send), logging `failure` when it raises."""
    if landed is None:
        return
    try:
        await landed()
    except Exception:
        log.exception(failure)


class Settling:
    """The commits of this process still being settled."""

    def __init__(self, store: Store):
        self.store = store
        self._tasks: set[asyncio.Task] = set()

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def hand_over(self, unknown: CommitUnknown, what: str, landed: Landed | None) -> None:
        """Settle `unknown` (a step described by `what`); run `landed` once it proves to be in."""
        self._background(self._settle(unknown, what, landed))

    async def _settle(self, unknown: CommitUnknown, what: str, landed: Landed | None) -> None:
        try:
            committed: Committed = await repeated(lambda: self.store.recommit(unknown))
        except RedisError as err:
            log.error("gave up settling %s after %d s (its messages are not sent if it "
                      "landed): %s", what, SETTLE_FOR, err)
            return
        if not committed.ok:
            log.info("%s did not land; nothing to send", what)
            return
        log.info("%s landed after its request gave up; sending its messages", what)
        await _then(landed, f"{what} landed but its messages could not be sent")

    def replicate(self, channel: str, phone: str, what: str, landed: Landed | None) -> None:
        """A commit is on the master but its replicas had not all acknowledged it
        (REDIS_WAIT_REPLICAS): once they have, run `landed` (an inbound message's replies go
        through the REST API, unless its redelivery claimed them first)."""
        self._background(self._replicate(channel, phone, what, landed))

    async def _replicate(self, channel: str, phone: str, what: str, landed: Landed | None) -> None:
        try:
            await repeated(lambda: self.store.replicated(channel, phone))
        except RedisError as err:  # the master serves it: better late than silent
            log.error("%s never reached the replicas asked for within %d s; sending its "
                      "messages anyway: %s", what, SETTLE_FOR, err)
        await _then(landed, f"{what} was committed but its messages could not be sent")

    def take_over(self, unknown: ReadUnknown, what: str, queue_of: QueueOf, queued: Callable[[], None]) -> None:
        """A redelivery's read (`unknown`) may have claimed its replies for a TwiML answer that
        never went: once Redis answers, hand that claim to the REST API, queueing the message
        `queue_of` makes of the replies (id, due, JSON; None: none to send) in the same step,
        then call `queued`."""
        self._background(self._take_over(unknown, what, queue_of, queued))

    async def _take_over(self, unknown: ReadUnknown, what: str, queue_of: QueueOf, queued) -> None:
        try:
            replies = await repeated(lambda: self.store.claimed_replies(unknown))
            if replies is None:
                return  # the read claimed nothing (or another delivery holds the claim)
            queue = queue_of(replies)
            if queue is None:
                return
            # the take over queues the message as it lands and knows a repeat of itself: repeated
            # while Redis does not answer, it neither leaves the replies unsent nor queues them twice
            if not await repeated(lambda: self.store.take_over(unknown, queue)):
                return  # the read's claim no longer holds
        except RedisError as err:
            log.error("gave up handing %s to the REST API after %d s: %s", what, SETTLE_FOR, err)
            return
        log.info("%s: its read answered too late for TwiML; its replies go through the REST API", what)
        queued()

    def _background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Give unsettled commits CLOSE_GRACE, then stop them (and say so)."""
        if not self._tasks:
            return
        _, unsettled = await asyncio.wait(set(self._tasks), timeout=CLOSE_GRACE)
        for task in unsettled:
            task.cancel()
        if unsettled:
            log.error("stopping with %d commits unsettled: if they landed, their messages are not sent",
                      len(unsettled))
        await asyncio.gather(*unsettled, return_exceptions=True)
