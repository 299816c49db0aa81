"""The server's conversation shell: read from Redis, step the pure engine, commit, send.

Every change to a conversation (an inbound message, a start, a timer, an opt-out Twilio
reports) goes through `_apply`: read the respondent record, its revision and (for an inbound
message) the dedupe record in one script; step the pure core; commit in one script that fails
if anything changed meanwhile, and then read again after a short random pause. So a
redelivered webhook gets the stored reply, and two messages from one number at once are
applied one after the other. The rules (which message may go how, what to keep for how long)
are the core's: engine.conversation and engine.policy.

A commit whose answer is lost (Redis slow or gone mid-call) is repeated once, patiently
(Store.recommit), so a slow Redis still gets a normal answer. When even that gets none, the
request gives up (503) and engine.runtime.settling finishes the job: once the commit proves
to be in, the step's messages go out through the REST API (for an inbound message, unless a
redelivery claimed them first: cv:{T}:claims).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from redis.exceptions import RedisError

from engine import conversation, policy
from engine import step as steps
from engine.conversation import NotStartable, Outcome, Respondent
from engine.events import ReminderNotSent, SessionClosed, SessionOpened
from engine.records.optouts import event_records
from engine.redis.store import Change, CommitUnknown, ReadUnknown, Snapshot, Store, commit_tag
from engine.runtime.metrics import Metrics
from engine.runtime.registry import Registry
from engine.runtime.settings import Settings
from engine.runtime.settling import Settling
from engine.runtime.twilio import (
    UNSUBSCRIBED,
    DeliveryStatus,
    Inbound,
    Origin,
    SandboxSender,
    Sender,
    SendFailed,
    origin_for,
)
from engine.session import Session, evolve, offset

log = logging.getLogger("canvass.service")

MAX_ATTEMPTS = 20  # compare-and-set retries before answering 503 (Twilio retries later)
# A commit whose answer was lost is repeated patiently (PATIENT_TIMEOUT) only by a request that
# has not waited longer than this already: at most about 2 + 1 + 3 s, far below Twilio's 15 s.
PATIENT_WITHIN = 2.0
TIMER_LEASE = 60.0  # a claimed timer comes back to every worker after this long
TIMER_BATCH = 50
KNOWN_CONVERSATIONS = 4096  # committed states kept (class Recent)
KNOWN_FOR = 600.0  # seconds an entry of Recent is trusted: far less than a record's TTL, after
# which its revision count starts again, so an old entry can never pass for a current one


class Busy(Exception):
    """The conversation kept changing under us; try again later."""


class Unsettled(RedisError):
    """A step's commit may have landed and Redis would not say: it is being settled in the
    background (engine.runtime.settling), which sends its messages if it landed."""


class Refused(Exception):
    """A start the API refuses: an HTTP status, a stable reason and a sentence."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


@dataclass(frozen=True)
class Applied:
    replies: list[str]
    outcome: Outcome | None  # None for a duplicate, or a step that had nothing to change
    respondent: Respondent | None  # the state as committed, or as read (None for a duplicate)
    unchanged: Snapshot | None = None  # what was read, when the step had nothing to change


# A step: the respondent as stored and the time -> what to commit, or None when nothing changes.
StepFunction = Callable[[Respondent, float], Outcome | None]
# What sends a committed step's messages when its commit proves to be in only after its
# request gave up (None: the step sends nothing).
OnLanded = Callable[[Outcome], Awaitable[None]] | None


def record_ttl(respondent: Respondent, now: float) -> int:
    """The stored record's TTL in seconds (0: keep it forever), as engine.policy.keep_for says."""
    keep = policy.keep_for(respondent, now)
    return 0 if keep is None else keep


class Recent:
    """The state this worker last committed for each of the latest KNOWN_CONVERSATIONS
    conversations, so that a conversation's next step can skip the READ round trip and the
    decoding of its record.

    COMMIT checks the revision and the MessageSid anyway, so an entry that is no longer
    current costs one failed commit before the READ, never a wrong step. Where several
    workers share the conversations (Twilio spreads a number's messages over them) most
    entries would be stale and cost more than they save: they are used only while most
    have lately been current, which commits after a READ keep finding out. An entry's
    Respondent is shared, never changed: steps make new ones (dataclasses are replaced)."""

    def __init__(self, size: int = KNOWN_CONVERSATIONS):
        self.size = size
        self.current_share = 1.0  # moving average: was an entry still current when next needed?
        self._entries: OrderedDict[tuple[str, str], tuple[Snapshot, Respondent, float]] = OrderedDict()

    def get(self, channel: str, phone: str) -> tuple[Snapshot, Respondent] | None:
        """The conversation as this worker committed it (stored and decoded), when worth
        trying; else None."""
        if self.current_share < 0.5:
            return None
        entry = self._entries.get((channel, phone))
        if entry is None or time.monotonic() - entry[2] > KNOWN_FOR:
            return None
        return entry[0], entry[1]

    def committed(self, base: Snapshot, change: Change, respondent: Respondent) -> None:
        """`change`, which stores `respondent`, was committed over `base`: remember the
        result, and learn whether the entry it replaces was still current."""
        key = (base.channel, base.phone)
        earlier = self._entries.pop(key, None)
        if earlier is not None:
            self._learn(earlier[0].revision == base.revision)
        # COMMIT sets the revision to the one it expected plus one.
        snapshot = Snapshot(base.channel, base.phone, change.record, str(int(base.revision) + 1), None)
        self._entries[key] = (snapshot, respondent, time.monotonic())
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def stale(self, base: Snapshot) -> None:
        """The commit over `base`, an entry of get(), failed: the conversation changed since."""
        self._entries.pop((base.channel, base.phone), None)
        self._learn(False)

    def clear(self) -> None:
        self._entries.clear()

    def _learn(self, current: bool) -> None:
        self.current_share += (current - self.current_share) / 32


class Service:
    def __init__(self, store: Store, registry: Registry, settings: Settings, metrics: Metrics,
                 clock: Callable[[], float], sender: Sender | SandboxSender | None):
        self.store, self.registry, self.settings = store, registry, settings
        self.metrics, self.clock, self.sender = metrics, clock, sender
        self.recent = Recent()
        self.records = None  # engine.records.optouts.OptOutBook once the records database is open
        self.usage = None  # engine.runtime.usage.Usage: every message counted, once the database is open
        self.settling = Settling(store)

    async def aclose(self) -> None:
        await self.settling.aclose()

    # ------------------------------------------------------------ the read-step-commit loop

    async def _apply(self, channel: str, phone: str, step: StepFunction,
                     message_sid: str | None = None, landed: OnLanded = None,
                     late: Callable[[list[str]], Awaitable[None]] | None = None) -> Applied:
        started = time.perf_counter()
        if not self.registry.published:
            await self.registry.publish()  # Redis was down at startup; sources first
        # Only an inbound message may start from this worker's own last commit: its COMMIT
        # fails on a stale copy. A start or a timer could decide wrongly from one (refuse a
        # start for a session another worker closed) without ever committing, so they read.
        recent = self.recent.get(channel, phone) if message_sid else None
        for attempt in range(MAX_ATTEMPTS):
            known = recent is not None
            if known:
                snapshot, respondent = recent
            else:
                try:
                    snapshot = await self.store.read(channel, phone, message_sid)
                except ReadUnknown as unknown:
                    if late is not None:  # a redelivery may have claimed a reply it cannot give
                        self.settling.take_over(unknown, f"{message_sid} from {channel}:{phone}", late)
                    raise
                if snapshot.seen_replies is not None:
                    self.metrics.duplicates.inc()
                    return Applied(snapshot.seen_replies, None, None)
                respondent = self._respondent(snapshot)
            if respondent.session is not None:
                await self.registry.pin(respondent.session.survey, respondent.session.version)
            now = self.now()
            outcome = step(respondent, now)
            if outcome is None:
                return Applied([], None, respondent, unchanged=snapshot)
            if await self._commit(snapshot, outcome, message_sid, now, landed, started):
                self._count(outcome)
                self.metrics.step_latency.observe(time.perf_counter() - started)
                return Applied(outcome.replies, outcome, outcome.respondent)
            if known:  # read it as it is now (also when this message is a redelivery)
                self.recent.stale(snapshot)
            else:
                self.metrics.conflicts.inc()
                await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
            recent = None
        raise Busy(f"{channel}:{phone} changed {MAX_ATTEMPTS} times while we tried to apply a step")

    def now(self) -> float:
        """The time a step is taken at: whole seconds, as records keep it (engine.session), so
        that the Respondent a step makes is the one its stored record decodes to (Recent)."""
        return float(math.floor(self.clock()))

    def _respondent(self, snapshot: Snapshot) -> Respondent:
        if snapshot.record is None:
            return Respondent(snapshot.channel, snapshot.phone)
        return Respondent.loads(snapshot.record, snapshot.channel, snapshot.phone)

    async def _commit(self, snapshot: Snapshot, outcome: Outcome, message_sid: str | None,
                      now: float, landed: OnLanded, started: float) -> bool:
        respondent = outcome.respondent
        session = respondent.session
        change = Change(
            record=respondent.dumps(), record_ttl=record_ttl(respondent, now), due=respondent.due_at(),
            pinned=(session.survey, session.version) if session is not None else None,
            responses=tuple(outcome.responses), message_sid=message_sid, replies=tuple(outcome.replies),
            opt_outs=event_records(respondent.channel, respondent.phone, outcome.events, self.clock()))
        try:
            committed = await self.store.commit(snapshot, change)
        except CommitUnknown as unknown:
            try:
                if time.perf_counter() - started > PATIENT_WITHIN:
                    raise  # this request waited already: answer now, so a webhook stays short
                committed = await self.store.recommit(unknown)
            except CommitUnknown as still:
                what = f"a step of {snapshot.channel}:{snapshot.phone}"
                self.settling.hand_over(still, what, None if landed is None else lambda: landed(outcome))
                raise Unsettled(f"{what} may have been committed; settling it in the background") from None
        if not committed.ok:
            return False
        self.recent.committed(snapshot, change, respondent)
        if committed.flow_missing and session is not None:
            await self.registry.republish(session.survey, session.version)
        return True

    def _count(self, outcome: Outcome) -> None:
        for event in outcome.events:
            if isinstance(event, SessionOpened):
                self.metrics.sessions_opened.inc(event.survey)
            elif isinstance(event, SessionClosed):
                self.metrics.sessions_closed.inc(event.status)
            elif isinstance(event, ReminderNotSent):
                log.warning("reminder to %s:%s not sent: %s", outcome.respondent.channel,
                            outcome.respondent.phone, event.reason)

    def count_sent(self, channel: str, texts: list[str | None]) -> None:
        """Count sent messages; None stands for a WhatsApp template (no SMS segments)."""
        self.metrics.messages_out.inc(channel, amount=len(texts))
        if channel == "sms":
            self.metrics.segments_out.inc(amount=sum(steps.segment_count(channel, t) for t in texts if t))

    # ------------------------------------------------------------ inbound messages

    async def receive(self, inbound: Inbound) -> list[str]:
        """The replies to an inbound message (the stored ones when it is a redelivery)."""
        before: Respondent | None = None

        def step(respondent: Respondent, now: float) -> Outcome:
            nonlocal before
            before = respondent
            return conversation.receive(self.registry, respondent, inbound.body, now)

        async def landed(outcome: Outcome) -> None:
            await self._reply_late(inbound, outcome.replies)

        async def late(replies: list[str]) -> None:  # the REST API already holds the claim
            await self._reply_late(inbound, replies, claimed=True)

        applied = await self._apply(inbound.channel, inbound.phone, step, inbound.message_sid, landed, late)
        if applied.outcome is not None:
            self.metrics.messages_in.inc(inbound.channel)
            self.count_sent(inbound.channel, applied.replies)
        if self.usage is not None and applied.respondent is not None:  # not a redelivery
            # for the survey the message belongs to: the one it opened or kept, else the one it closed
            self.usage.exchange(inbound.channel, inbound.phone, inbound.body, applied.replies,
                                applied.respondent.session or before.session)
        return applied.replies

    async def _reply_late(self, inbound: Inbound, replies: list[str], claimed: bool = False) -> None:
        """Send the replies of an inbound message whose webhook answered without them, through
        the REST API, unless a redelivery of the message claimed them first (`claimed`: this
        sender holds the claim already)."""
        if not replies:
            return
        if self.sender is None:
            log.warning("no reply sent to %s:%s for %s: sending is not configured", inbound.channel,
                        inbound.phone, inbound.message_sid)
            return
        # from the number the respondent texted, as a TwiML reply comes
        origin = Origin(from_=inbound.to) if inbound.to else origin_for(
            inbound.channel, None, self.settings.messaging_service_sid, self.settings.sender_number)
        if origin is None:
            log.warning("no reply sent to %s:%s for %s: no sender", inbound.channel, inbound.phone,
                        inbound.message_sid)
            return
        if not claimed:
            mine = "rest:" + commit_tag()
            if await self.store.claim(inbound.channel, inbound.phone, inbound.message_sid, mine) != mine:
                return  # a redelivery answered with them, or another sender holds them
        try:
            await self._send(inbound.channel, inbound.phone, origin, replies, None)
        except SendFailed as err:
            log.warning("the reply to %s (%s:%s) could not be sent: %s", inbound.message_sid,
                        inbound.channel, inbound.phone, err)

    # ------------------------------------------------------------ starting by invitation

    async def start(self, survey_id: str, channel: str, phone: str, fields: dict[str, str]) -> dict:
        """Open a session and send its first message(s) through Twilio; Refused when it cannot."""
        flow = self.registry.get(survey_id)
        if flow is None:
            raise Refused(404, "unknown_survey", f"there is no survey '{survey_id}'")
        origin = self._origin(channel, flow.survey.sender)
        refusal = await self.records.refusal(channel, phone) if self.records is not None else None
        if refusal is not None:  # an opt-out Redis may have lost
            raise Refused(*refusal)

        def step(respondent: Respondent, now: float) -> Outcome:
            return conversation.start(flow, respondent, fields, now, flows=self.registry)

        async def landed(outcome: Outcome) -> None:
            try:
                await self._send_first(channel, phone, origin, outcome, fields)
            except Refused as err:
                log.warning("a start of %s for %s:%s landed late but failed: %s", flow.id, channel, phone,
                            err.message)

        try:
            applied = await self._apply(channel, phone, step, landed=landed)
        except NotStartable as err:
            raise Refused(409, err.reason, _NOT_STARTABLE[err.reason]) from None
        except Unsettled:
            raise Refused(503, "outcome_unknown", "Redis did not confirm the start in time. If it "
                          "landed, its first message is sent as soon as Redis confirms it; retrying "
                          "is safe (a start that landed answers 409 open_session).") from None
        sids = await self._send_first(channel, phone, origin, applied.outcome, fields)
        return {"survey": flow.id, "version": flow.version, "channel": channel, "to": phone,
                "messages": sids, "template": applied.outcome.template}

    async def _send_first(self, channel: str, phone: str, origin: Origin, outcome: Outcome,
                          fields: dict[str, str]) -> list[str]:
        """Send a committed start's first message(s); when Twilio refuses, the session is undone."""
        try:
            return await self._send(channel, phone, origin, outcome.replies, outcome.template, fields)
        except SendFailed as err:
            await self._undo_start(channel, phone, outcome.respondent.session, err.code)
            if err.code == UNSUBSCRIBED:
                raise Refused(409, "opted_out", "Twilio reports the number unsubscribed (21610)") from None
            raise Refused(502, "twilio_error", f"Twilio did not send the message: {err}"
                          + (f" (error {err.code})" if err.code else "")) from None

    def _origin(self, channel: str, survey_sender: str | None) -> Origin:
        if self.sender is None:
            raise Refused(503, "sending_disabled",
                          "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are needed to send messages "
                          "(without them, --insecure on a loopback address sends to the local sandbox)")
        origin = origin_for(channel, survey_sender, self.settings.messaging_service_sid,
                            self.settings.sender_number)
        if origin is None:
            raise Refused(503, "no_sender", "no sender: set the survey's sender, or "
                          "TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM_NUMBER")
        return origin

    async def _send(self, channel: str, phone: str, origin: Origin, texts: list[str],
                    content_sid: str | None, variables: dict | None = None) -> list[str]:
        """Send the texts (or, outside the WhatsApp window, the template instead)."""
        sids = []
        if content_sid:
            sids.append(await self._send_one(channel, phone, origin, None, content_sid, variables))
            return sids
        for text in texts:
            sids.append(await self._send_one(channel, phone, origin, text))
        return sids

    async def _send_one(self, channel: str, phone: str, origin: Origin, text: str | None,
                        content_sid: str | None = None, variables: dict | None = None) -> str:
        try:
            sid = await self.sender.send(channel, phone, origin, text, content_sid, variables)
        except SendFailed:
            self.metrics.send_failures.inc(channel)
            raise
        self.count_sent(channel, [text])
        try:  # the message is out: failing to note it must not make the caller think otherwise
            await self.store.record_delivery(channel, phone, sid, "queued", None, self.clock())
        except RedisError as err:
            log.warning("sent %s to %s:%s but could not record it as queued: %s", sid, channel, phone, err)
        return sid

    async def _undo_start(self, channel: str, phone: str, session: Session | None,
                          code: int | None) -> None:
        """The first message never left: drop the session it opened (and honour 21610)."""
        def step(respondent: Respondent, now: float) -> Outcome:
            current = respondent.session
            # the stored session keeps whole seconds: compare its start as stored
            if session is not None and current is not None and current.survey == session.survey \
                    and offset(current.started_at, session.started_at) == 0:
                respondent = evolve(respondent, session=None)
            outcome = Outcome(respondent)
            return conversation.opt_out(self.registry, respondent, now) if code == UNSUBSCRIBED else outcome

        await self._apply(channel, phone, step)

    # ------------------------------------------------------------ timers

    async def sweep(self) -> int:
        """Fire every due reminder and expiry this worker can claim; how many were claimed."""
        claimed = await self.store.claim_due(self.clock(), TIMER_LEASE, TIMER_BATCH)
        results = await asyncio.gather(*(self._tick(channel, phone) for channel, phone in claimed),
                                       return_exceptions=True)
        for (channel, phone), result in zip(claimed, results, strict=True):
            if isinstance(result, Exception):
                log.error("timer for %s:%s failed (retried after the lease): %r", channel, phone, result)
        return len(claimed)

    async def _tick(self, channel: str, phone: str) -> None:
        def step(respondent: Respondent, now: float) -> Outcome | None:
            outcome = conversation.tick(self.registry, respondent, now)
            if outcome.respondent == respondent and not outcome.replies and not outcome.responses:
                return None  # not due (any more)
            return outcome

        applied = await self._apply(channel, phone, step, landed=self._send_reminder)
        if applied.unchanged is not None:
            await self.store.reschedule(applied.unchanged, applied.respondent.due_at())
        elif applied.outcome.replies:
            await self._send_reminder(applied.outcome)

    async def _send_reminder(self, outcome: Outcome) -> None:
        """Send a committed reminder. One that did not go (no sender, or Twilio answered with an
        error) is taken back from the session; one whose fate is unknown (Twilio could not be
        reached) stays counted, as it may have gone."""
        respondent, texts = outcome.respondent, outcome.replies
        channel, phone, session = respondent.channel, respondent.phone, respondent.session
        flow = self.registry.get(session.survey, session.version)
        code = None
        try:
            origin = self._origin(channel, flow.survey.sender if flow is not None else None)
            await self._send(channel, phone, origin, texts, outcome.template, session.fields)
            return
        except Refused as err:
            reason = err.message
        except SendFailed as err:
            if err.status is None:
                log.warning("reminder to %s:%s may not have gone: %s", channel, phone, err)
                return
            reason, code = f"{err} (error {err.code})", err.code

        def take_back(current: Respondent, now: float) -> Outcome:
            taken = conversation.reminder_not_sent(current, session, texts, reason)
            if code != UNSUBSCRIBED:
                return taken
            opted = conversation.opt_out(self.registry, taken.respondent, now)
            opted.events[:0] = taken.events
            return opted

        await self._apply(channel, phone, take_back)

    # ------------------------------------------------------------ delivery statuses

    async def record_status(self, status: DeliveryStatus) -> None:
        await self.store.record_delivery(status.channel, status.phone, status.message_sid,
                                         status.status, status.error_code, self.clock())
        if status.error_code == UNSUBSCRIBED:
            await self._apply(status.channel, status.phone,
                              lambda r, now: conversation.opt_out(self.registry, r, now))


_NOT_STARTABLE = {
    "open_session": "the number already has an open session",
    "opted_out": "the number has opted out",
    "whatsapp_window": "outside WhatsApp's 24-hour window a first message needs an approved "
                       "template; set whatsapp_template (a ContentSid) on the survey",
}
