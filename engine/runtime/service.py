"""The server's conversation shell: read from Redis, step the pure engine, commit, send.

Every change to a conversation (an inbound message, a start, a timer, an opt-out Twilio
reports) goes through `_apply`: read the respondent record, its revision and (for an inbound
message) whether its MessageSid was seen, in one script; step the pure core; commit in one script that fails
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
import functools
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
from engine.conversation import NotStartable, Outcome, Respondent, WithStatuses
from engine.events import WEB_PAGE, ReminderNotSent, SessionClosed, SessionOpened
from engine.records.optouts import event_records
from engine.redis.outbox import Message
from engine.redis.store import (
    Change,
    CommitUnknown,
    NotReplicated,
    ReadUnknown,
    Snapshot,
    Store,
    commit_tag,
)
from engine.runtime.metrics import Metrics
from engine.runtime.outbox import HOLD, Result, Senders, message_for
from engine.runtime.registry import Registry
from engine.runtime.settings import Settings
from engine.runtime.settling import QueueOf, Settling, repeated
from engine.runtime.twilio import (
    UNSUBSCRIBED,
    DeliveryStatus,
    Inbound,
    Origin,
    SandboxSender,
    Sender,
    origin_for,
)
from engine.session import Session, evolve, offset
from engine.sms.credits import charged_segments

log = logging.getLogger("canvass.service")

MAX_ATTEMPTS = 20  # compare-and-set retries before answering 503 (Twilio retries later)
# A commit whose answer was lost is repeated patiently (PATIENT_TIMEOUT) only by a request that
# has not waited longer than this already: at most about 2 + 1 + 3 s, far below Twilio's 15 s.
PATIENT_WITHIN = 2.0
TIMER_LEASE = 60.0  # a claimed timer comes back to every worker after this long
TIMER_BATCH = 50
STATUSES_FRESH = 1.0  # seconds a worker steps on the surveys' statuses it read (Service.flows)
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
# The messages a step sends on its own initiative, with when each may go: written into the
# outbox by the step's commit (engine.runtime.outbox sends them).
Outgoing = Callable[[Outcome, float], list[tuple[Message, float]]] | None
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
        self._statuses: dict[str, str] | None = None  # the surveys' statuses as last read (flows)
        self._statuses_read_at = 0.0
        self.recent = Recent()
        self.records = None  # engine.records.optouts.OptOutBook once the records database is open
        self.usage = None  # engine.runtime.usage.Usage: every message counted, once the database is open
        self.settling = Settling(store)
        self.senders: Senders | None = None  # the outbox's senders, when sending is configured

    async def aclose(self) -> None:
        await self.settling.aclose()

    # ------------------------------------------------------------ the read-step-commit loop

    async def _apply(self, channel: str, phone: str, step: StepFunction,
                     message_sid: str | None = None, landed: OnLanded = None,
                     late: QueueOf | None = None,
                     outgoing: Outgoing = None) -> Applied:
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
                        self.settling.take_over(unknown, f"{message_sid} from {channel}:{phone}", late,
                                                self._wake_senders)
                    raise
                if snapshot.seen_replies is not None:
                    self.metrics.duplicates.inc()
                    await self.store.replicated(channel, phone)  # answered only once it is safe
                    return Applied(snapshot.seen_replies, None, None)
                respondent = self._respondent(snapshot)
            if respondent.session is not None:
                await self.registry.pin(respondent.session.survey, respondent.session.version)
            now = self.now()
            outcome = step(respondent, now)
            if outcome is None:
                return Applied([], None, respondent, unchanged=snapshot)
            messages = tuple(outgoing(outcome, now)) if outgoing is not None else ()
            if await self._commit(snapshot, outcome, message_sid, now, landed, started, messages):
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
                      now: float, landed: OnLanded, started: float,
                      messages: tuple[tuple[Message, float], ...] = ()) -> bool:
        respondent = outcome.respondent
        session = respondent.session
        change = Change(
            record=respondent.dumps(), record_ttl=record_ttl(respondent, now), due=respondent.due_at(),
            pinned=(session.survey, session.version) if session is not None else None,
            responses=tuple(outcome.responses), message_sid=message_sid, replies=tuple(outcome.replies),
            opt_outs=event_records(respondent.channel, respondent.phone, outcome.events, self.clock()),
            outbox=tuple((message.id, due, message.dumps()) for message, due in messages))
        what = f"a step of {snapshot.channel}:{snapshot.phone}"
        then = None if landed is None else lambda: landed(outcome)
        try:
            try:
                committed = await self.store.commit(snapshot, change)
            except CommitUnknown as unknown:
                try:
                    if time.perf_counter() - started > PATIENT_WITHIN:
                        raise  # this request waited already: answer now, so a webhook stays short
                    committed = await self.store.recommit(unknown)
                except CommitUnknown as still:
                    self.settling.hand_over(still, what, then)
                    raise Unsettled(f"{what} may have been committed; settling it in the background") from None
        except NotReplicated:
            # in, on the master: a redelivery is answered from it once replicated; else its
            # messages go once the replicas have it (the request still answers 503)
            self.settling.replicate(snapshot.channel, snapshot.phone, what, then)
            raise
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
        self._count_out(channel, len(texts), sum(steps.segment_count(channel, t) for t in texts if t))

    def _count_out(self, channel: str, messages: int, segments: int) -> None:
        self.metrics.messages_out.inc(channel, amount=messages)
        if channel == "sms":
            self.metrics.segments_out.inc(amount=segments)

    async def flows(self) -> WithStatuses:
        """The live flows with the surveys' statuses as Redis held them at most STATUSES_FRESH
        seconds ago: a survey paused or closed through any worker is refused by every worker
        within that, and by the one that changed it at once (statuses_changed). Reading them
        for every step would cost each webhook a Redis command, all of them on one key."""
        now = time.monotonic()
        if self._statuses is None or now - self._statuses_read_at >= STATUSES_FRESH:
            self._statuses = await self.store.survey_statuses()
            self._statuses_read_at = now
        return WithStatuses(self.registry, self._statuses)

    def statuses_changed(self) -> None:
        """A status was just set: the next step reads them again."""
        self._statuses = None

    # ------------------------------------------------------------ inbound messages

    async def receive(self, inbound: Inbound) -> list[str]:
        """The replies to an inbound message (the stored ones when it is a redelivery)."""
        before: Respondent | None = None
        flows = await self.flows()

        def step(respondent: Respondent, now: float) -> Outcome:
            nonlocal before
            before = respondent
            return conversation.receive(flows, respondent, inbound.body, now)

        async def landed(outcome: Outcome) -> None:
            if self.usage is not None:  # its replies are counted as the outbox sends them
                self.usage.exchange(inbound.channel, inbound.phone, inbound.body, [],
                                    outcome.respondent.session or (before.session if before else None))
            await self._reply_late(inbound, outcome.replies)

        late = functools.partial(self._late_reply, inbound)  # for replies a redelivery's read claimed
        applied = await self._apply(inbound.channel, inbound.phone, step, inbound.message_sid, landed, late)
        if applied.outcome is not None:
            self.metrics.messages_in.inc(inbound.channel)
            self.count_sent(inbound.channel, applied.replies)
        if self.usage is not None and applied.respondent is not None:  # not a redelivery
            # for the survey the message belongs to: the one it opened or kept, else the one it closed
            self.usage.exchange(inbound.channel, inbound.phone, inbound.body, applied.replies,
                                applied.respondent.session or before.session)
        return applied.replies

    async def _reply_late(self, inbound: Inbound, replies: list[str]) -> None:
        """Queue the replies of an inbound message whose webhook answered without them for the
        REST API (the outbox), unless a redelivery of the message claimed them first."""
        queue = self._late_reply(inbound, replies)
        if queue is None:
            return
        # the claim queues the message as it wins and knows a repeat of itself: repeated while
        # Redis does not answer, it neither leaves the replies claimed and unsent nor queues them twice
        mine = "rest:" + commit_tag()
        if await repeated(lambda: self.store.claim(inbound.channel, inbound.phone, inbound.message_sid,
                                                   mine, queue)) != mine:
            return  # a redelivery answered with them, or another sender holds them
        self._wake_senders()

    def _late_reply(self, inbound: Inbound, replies: list[str]) -> tuple[str, float, str] | None:
        """The REST API's message of an inbound message's late replies, to queue now (its id,
        due time and JSON; None: none to send)."""
        if not replies:
            return None
        if self.senders is None:
            log.warning("no reply sent to %s:%s for %s: sending is not configured", inbound.channel,
                        inbound.phone, inbound.message_sid)
            return None
        # from the number the respondent texted, as a TwiML reply comes
        origin = Origin(from_=inbound.to) if inbound.to else origin_for(
            inbound.channel, None, self.settings.messaging_service_sid, self.settings.sender_number)
        if origin is None:
            log.warning("no reply sent to %s:%s for %s: no sender", inbound.channel, inbound.phone,
                        inbound.message_sid)
            return None
        message = message_for("reply", inbound.channel, inbound.phone, origin, replies, None, None)
        return message.id, self.clock(), message.dumps()

    def _wake_senders(self) -> None:
        if self.senders is not None:
            self.senders.wake()

    # ------------------------------------------------------------ the survey's web pages

    async def web_read(self, respondent_id: str, page_id: str | None = None) -> tuple[Respondent | None, list[str] | None]:
        """A web respondent as stored (None: no record), and, when `page_id` was committed, what
        its step said (its end message, when it closed the session) while that is kept."""
        snapshot = await self.store.read(policy.WEB, respondent_id, page_id)
        respondent = None if snapshot.record is None else self._respondent(snapshot)
        return respondent, snapshot.seen_replies if snapshot.replies_kept else None

    async def web_step(self, respondent_id: str, step: StepFunction, page_id: str | None = None) -> Applied:
        """A step of a web respondent (engine.runtime.web): the read-step-commit loop of a text
        message, `page_id` (the page's one-time id) standing for its MessageSid, so a page
        posted twice is applied once. Nothing is sent and nothing is counted for credits:
        a page is not a message."""
        return await self._apply(policy.WEB, respondent_id, step, page_id)

    async def opt_out(self, channel: str, phone: str) -> None:
        """The number opts out at a link invitation's opt-out page, as a STOP does: an open
        session closes, the opt-out goes to the records database; again, it changes nothing."""
        await self._apply(channel, phone, lambda r, now: conversation.opt_out(self.registry, r, now, how=WEB_PAGE))

    # ------------------------------------------------------------ starting by invitation

    async def start(self, survey_id: str, channel: str, phone: str, fields: dict[str, str]) -> dict:
        """Open a session and send its first message(s) through Twilio; Refused when it cannot.

        The commit that opens the session also writes its first message into the outbox, held
        for this worker (HOLD), which sends it at once: so the answer tells how it went, and a
        worker killed in between leaves the message to the other senders, never lost."""
        flow = self.registry.get(survey_id)
        if flow is None:
            raise Refused(404, "unknown_survey", f"there is no survey '{survey_id}'")
        origin = self._origin(channel, flow.survey.sender)
        refusal = await self.records.refusal(channel, phone) if self.records is not None else None
        if refusal is not None:  # an opt-out Redis may have lost
            raise Refused(*refusal)
        queued: list[Message] = []
        flows = await self.flows()

        def step(respondent: Respondent, now: float) -> Outcome:
            return conversation.start(flow, respondent, fields, now, flows=flows)

        def outgoing(outcome: Outcome, now: float) -> list[tuple[Message, float]]:
            queued[:] = [self._message("start", outcome, origin, fields)]
            return [(queued[0], now + HOLD)]

        async def landed(outcome: Outcome) -> None:  # the held message: send it now
            await self.senders.send_now([message.id for message in queued])

        try:
            applied = await self._apply(channel, phone, step, landed=landed, outgoing=outgoing)
        except NotStartable as err:
            raise Refused(409, err.reason, _NOT_STARTABLE[err.reason]) from None
        except Unsettled:
            raise Refused(503, "outcome_unknown", "Redis did not confirm the start in time. If it "
                          "landed, its first message is sent as soon as Redis confirms it; retrying "
                          "is safe (a start that landed answers 409 open_session).") from None
        try:
            result = (await self.senders.send_now([queued[0].id])).get(queued[0].id)
        except RedisError as err:  # the start is in, and so is its message: the outbox sends it
            log.warning("a start of %s for %s:%s is queued, not sent at once: %s", flow.id, channel, phone, err)
            result = None
        answer = {"survey": flow.id, "version": flow.version, "channel": channel, "to": phone,
                  "messages": list(result.sids) if result else [], "template": applied.outcome.template}
        if result is None or result.state in ("sent", "retry", "lost"):
            # retry / lost: Twilio is busy or another sender holds it; it goes from the outbox
            return {**answer, "status": "sent" if result and result.state == "sent" else "queued"}
        if result.state == "unknown":
            raise Refused(504, "send_unknown", f"Twilio did not answer ({result.reason}): the message "
                          "may have gone. It is kept as unknown (GET /admin/outbox) and sent again only "
                          "if you ask; the session stays open.")
        if result.code == UNSUBSCRIBED:
            raise Refused(409, "opted_out", "Twilio reports the number unsubscribed (21610)")
        raise Refused(502, "twilio_error", f"Twilio did not send the message: {result.reason}")

    async def invite(self, survey_id: str, channel: str, phone: str, fields: dict[str, str],
                     distribution: str) -> str:
        """Open a session for a distribution's recipient and queue its first message (the
        outbox sends it at the sender's pace). "queued", or "already" when an earlier try of
        this distribution opened it (its message is queued already); Refused (409 with the
        reason) when the number cannot be started (open session, opted out...)."""
        flow = self.registry.get(survey_id)
        if flow is None:
            raise Refused(404, "unknown_survey", f"there is no survey '{survey_id}'")
        origin = self._origin(channel, flow.survey.sender)
        fields = {**fields, DISTRIBUTION_FIELD: distribution}
        flows = await self.flows()

        def step(respondent: Respondent, now: float) -> Outcome | None:
            session = respondent.session
            if session is not None and session.fields.get(DISTRIBUTION_FIELD) == distribution:
                return None  # this distribution invited it already
            return conversation.start(flow, respondent, fields, now, flows=flows)

        def outgoing(outcome: Outcome, now: float) -> list[tuple[Message, float]]:
            return [(self._message("invite", outcome, origin, fields, distribution), now)]

        return await self._queue_invitation(channel, phone, step, outgoing)

    async def invite_link(self, survey_id: str, phone: str, text: str, distribution: str,
                          sender: str | None = None) -> str:
        """Queue a link distribution's invitation `text` (the recipient's link in it) to `phone`
        by SMS, from `sender` (else the survey's). No session opens: the survey is answered at
        the link. The commit goes through the number's SMS conversation with
        "link:<distribution>" standing for its MessageSid, and writes only the message into the
        outbox, so a second try for the same recipient (a worker killed before the records said
        queued) finds that commit and queues nothing: "already". Else "queued"; Refused 409
        opted_out when Redis knows an opt-out the records database does not have yet, and
        survey_paused or survey_closed when the survey is no longer active."""
        flow = self.registry.get(survey_id)
        if flow is None:
            raise Refused(404, "unknown_survey", f"there is no survey '{survey_id}'")
        origin = self._origin(SMS, sender or flow.survey.sender)
        # read for each invitation (Service.flows: at most a second old), not once a round: a
        # survey paused or closed while the round's invitations go must stop them
        status = (await self.flows()).status(survey_id)

        def step(respondent: Respondent, now: float) -> Outcome:
            if not policy.opens_sessions(status):
                raise NotStartable(f"survey_{status}")
            if respondent.opted_out:
                raise NotStartable("opted_out")
            return Outcome(respondent)  # the conversation stays as it is

        def outgoing(outcome: Outcome, now: float) -> list[tuple[Message, float]]:
            return [(message_for("link", SMS, phone, origin, [text], None, None, survey=survey_id,
                                 version=flow.version, distribution=distribution), now)]

        return await self._queue_invitation(SMS, phone, step, outgoing, f"link:{distribution}")

    async def _queue_invitation(self, channel: str, phone: str, step: StepFunction, outgoing: Outgoing,
                                message_sid: str | None = None) -> str:
        """Commit an invitation's step with its message for the outbox: "queued", or "already"
        when an earlier try committed it; Refused 409 when the number cannot be invited."""
        try:
            applied = await self._apply(channel, phone, step, message_sid, outgoing=outgoing)
        except NotStartable as err:
            raise Refused(409, err.reason, _NOT_STARTABLE[err.reason]) from None
        if applied.outcome is None:
            return "already"
        self.senders.wake()
        return "queued"

    def _message(self, kind: str, outcome: Outcome, origin: Origin, fields: dict[str, str],
                 distribution: str | None = None) -> Message:
        session = outcome.respondent.session
        respondent = outcome.respondent
        message = message_for(kind, respondent.channel, respondent.phone, origin, outcome.replies,
                              outcome.template, fields, survey=session.survey if session else "",
                              version=session.version if session else "",
                              session_started=session.started_at if session else None,
                              distribution=distribution)
        invited_by = session.fields.get(DISTRIBUTION_FIELD) if session else None
        if invited_by and not distribution:  # its usage counts for the distribution too
            message.extra[DISTRIBUTION_FIELD] = invited_by
        return message

    def sender_address(self, survey_id: str, channel: str, sender: str | None = None) -> str:
        """The address a survey's messages on `channel` come from, or `sender`'s when given
        ('' when none can be sent)."""
        flow = self.registry.get(survey_id)
        try:
            origin = self._origin(channel, sender or (flow.survey.sender if flow is not None else None))
        except Refused:
            return ""
        return origin.messaging_service_sid or origin.from_ or ""

    def _origin(self, channel: str, survey_sender: str | None) -> Origin:
        if self.senders is None:
            raise Refused(503, "sending_disabled",
                          "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN are needed to send messages "
                          "(without them, --insecure on a loopback address sends to the local sandbox)")
        origin = origin_for(channel, survey_sender, self.settings.messaging_service_sid,
                            self.settings.sender_number)
        if origin is None:
            raise Refused(503, "no_sender", "no sender: set the survey's sender, or "
                          "TWILIO_MESSAGING_SERVICE_SID or TWILIO_FROM_NUMBER")
        return origin

    # ------------------------------------------------------------ how an outbound message ended

    def message_sent(self, message: Message, part: int) -> None:
        """A part of an outbound message is out (engine.runtime.outbox): counted, and used."""
        body = message.parts[part].get("body")
        # (counted once: an invitation's text is its contact's own, seldom in segment_count's cache)
        segments = steps.segment_count(message.channel, body) if body else 0
        self._count_out(message.channel, 1, segments)
        if self.usage is not None:
            self.usage.count(message.survey, message.distribution or message.extra.get(DISTRIBUTION_FIELD),
                             message.to, "out", charged_segments(message.channel, segments))

    async def message_ended(self, message: Message, result: Result) -> None:
        """What the end of an outbound message means for its conversation: a first message that
        failed undoes its start, a reminder that failed is taken back, and 21610 opts the
        number out."""
        if result.state == "unknown":
            self.metrics.send_unknown.inc(message.channel)
        if result.state == "failed":
            self.metrics.send_failures.inc(message.channel)
            log.warning("%s message to %s:%s failed: %s", message.kind, message.channel, message.to,
                        result.reason)
        if result.state != "failed":
            return
        if message.kind in ("start", "invite", "preview"):
            await self._undo_start(message, result.code)
        elif message.kind == "reminder":
            await self._take_back(message, result)
        elif result.code == UNSUBSCRIBED:
            await self._apply(message.channel, message.to,
                              lambda r, now: conversation.opt_out(self.registry, r, now))

    def _same_session(self, session: Session | None, message: Message) -> bool:
        # the stored session keeps whole seconds: compare its start as stored
        return session is not None and message.session_started is not None \
            and session.survey == message.survey and offset(session.started_at, message.session_started) == 0

    async def _undo_start(self, message: Message, code: int | None) -> None:
        """The first message never left: drop the session it opened (and honour 21610)."""
        def step(respondent: Respondent, now: float) -> Outcome:
            if self._same_session(respondent.session, message):
                respondent = evolve(respondent, session=None)
            outcome = Outcome(respondent)
            return conversation.opt_out(self.registry, respondent, now) if code == UNSUBSCRIBED else outcome

        await self._apply(message.channel, message.to, step)

    async def _take_back(self, message: Message, result: Result) -> None:
        """A reminder Twilio refused: taken back from its session (and 21610 honoured)."""
        texts = [part.get("body") or "" for part in message.parts]
        reason = result.reason

        def take_back(current: Respondent, now: float) -> Outcome:
            session = current.session if self._same_session(current.session, message) else None
            if session is None:
                outcome = Outcome(current)
            else:
                outcome = conversation.reminder_not_sent(current, session, texts, reason)
            if result.code != UNSUBSCRIBED:
                return outcome
            opted = conversation.opt_out(self.registry, outcome.respondent, now)
            opted.events[:0] = outcome.events
            return opted

        await self._apply(message.channel, message.to, take_back)

    # ------------------------------------------------------------ timers

    async def sweep(self) -> tuple[int, bool]:
        """Fire a batch of due reminders and expiries this worker can claim: how many were
        claimed, and whether more may be due."""
        claimed, more = await self.store.claim_due(self.clock(), TIMER_LEASE, TIMER_BATCH)
        results = await asyncio.gather(*(self._tick(channel, phone) for channel, phone in claimed),
                                       return_exceptions=True)
        for (channel, phone), result in zip(claimed, results, strict=True):
            if isinstance(result, Exception):
                log.error("timer for %s:%s failed (retried after the lease): %r", channel, phone, result)
        return len(claimed), more

    async def _tick(self, channel: str, phone: str) -> None:
        unsendable: list[str] = []
        flows = await self.flows()

        def step(respondent: Respondent, now: float) -> Outcome | None:
            outcome = conversation.tick(flows, respondent, now)
            if outcome.respondent == respondent and not outcome.replies and not outcome.responses:
                return None  # not due (any more)
            return outcome

        def outgoing(outcome: Outcome, now: float) -> list[tuple[Message, float]]:
            unsendable.clear()
            if not outcome.replies and not outcome.template:
                return []
            session = outcome.respondent.session
            flow = self.registry.get(session.survey, session.version)
            try:
                origin = self._origin(channel, flow.survey.sender if flow is not None else None)
            except Refused as err:
                unsendable.append(err.message)
                return []
            message = self._message("reminder", outcome, origin, session.fields)
            return [(message, now)]  # quiet hours: engine.policy moved the timer already

        async def landed(outcome: Outcome) -> None:
            if self.senders is not None:
                self.senders.wake()

        applied = await self._apply(channel, phone, step, landed=landed, outgoing=outgoing)
        if applied.unchanged is not None:
            await self.store.reschedule(applied.unchanged, applied.respondent.due_at())
        elif unsendable and applied.outcome.replies:
            await self._not_sendable(applied.outcome, unsendable[0])
        elif applied.outcome.replies and self.senders is not None:
            self.senders.wake()

    async def _not_sendable(self, outcome: Outcome, reason: str) -> None:
        """A reminder that cannot go at all (no sender configured) is taken back at once."""
        respondent, texts = outcome.respondent, outcome.replies
        session = respondent.session

        def take_back(current: Respondent, now: float) -> Outcome:
            return conversation.reminder_not_sent(current, session, texts, reason)

        await self._apply(respondent.channel, respondent.phone, take_back)

    # ------------------------------------------------------------ delivery statuses

    async def record_status(self, status: DeliveryStatus) -> None:
        await self.store.record_delivery(status.channel, status.phone, status.message_sid,
                                         status.status, status.error_code, self.clock())
        if status.error_code == UNSUBSCRIBED:
            await self._apply(status.channel, status.phone,
                              lambda r, now: conversation.opt_out(self.registry, r, now))


SMS = "sms"  # the channel link invitations go by
DISTRIBUTION_FIELD = "distribution_id"  # the session field naming the distribution that invited it

_NOT_STARTABLE = {
    "open_session": "the number already has an open session",
    "opted_out": "the number has opted out",
    "survey_paused": "the survey is paused: set its status to active to start respondents",
    "survey_closed": "the survey is closed: it takes no respondents (set its status to active to reopen it)",
    "whatsapp_window": "outside WhatsApp's 24-hour window a first message needs an approved "
                       "template; set whatsapp_template (a ContentSid) on the survey",
}
