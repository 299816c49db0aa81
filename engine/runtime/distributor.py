"""The distributor: every worker works through the distributions that are due.

Each round (every INTERVAL seconds, or at once after a round that filled a whole batch) it takes the distributions whose time has come
(engine.records.distributions), and for each one whose lease it holds (one worker at a time:
Store.lease_distribution) it invites a batch of pending recipients:

- outside the distribution's quiet hours in every time zone of the number, a recipient waits
  for the window (its `not_before`), or is skipped when the window never holds in all of them;
- the contact-frequency rule and the records database's opt-outs are checked again, as they
  may have changed since the distribution was created. The rule is checked under a claim on
  the number in Redis (Store.claim_invitation, FREQUENCY_CLAIM), dropped once the recipient's
  state is written: two distributions sent by two workers at once would otherwise both find
  the number under the rule in the records, and both invite it;
- Service.invite opens the session and writes the invitation into the outbox in one commit
  (refused for an open session or an opt-out Redis knows: skipped with that reason). The
  outbox sends it at the sender's pace; its outcome (sent, failed, unknown) and then Twilio's
  delivery statuses come back on the deliveries stream, which the archiver applies.

A link distribution's recipient gets no session: after the same checks, and the duplicate
suppression of link invitations (the same text to the same number within a day goes once; a
claim in Redis, Store.claim_invitation, keeps two workers from both sending it meanwhile), its
link is made once (engine.records.links.for_recipient: a second try finds the same one) and
Service.invite_link queues the invitation with the link in it (a second try queues nothing).

While the distribution's survey is paused (engine.policy) its recipients wait, pending; once
it is closed they are skipped with the reason survey_closed.

A recipient is queued only after its commit; a worker killed in between leaves it pending, and
the next try finds the session this distribution opened and counts it as queued (invite's
"already"), so nobody is invited twice. The batch is kept to what the outbox can send soon
(BACKLOG seconds of the sender's pace), so sessions do not open long before their message goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from engine import invitations
from engine.policy import CLOSED, PAUSED, QUIET_FIELD
from engine.records import distributions as records
from engine.records import links
from engine.records.distributions import Distribution, FrequencyRule, Recipient
from engine.runtime.service import Refused, Service
from engine.sms.quiet_hours import NEVER, QuietHours, next_allowed, time_zones

log = logging.getLogger("canvass.distributor")

INTERVAL = 1.0  # seconds between rounds
LEASE = 15.0  # seconds a worker's lease on a distribution lasts unless renewed
BACKLOG = 5.0  # seconds of the sender's pace queued ahead at most
UNPACED_BATCH = 500  # invitations per round when sending is not paced
AT_ONCE = 16  # invitations committed concurrently
FREQUENCY_CLAIM = "frequency"  # the claim on a number while the contact-frequency rule is checked (not a digest)


class Distributor:
    def __init__(self, engine: AsyncEngine, service: Service, clock: Callable[[], float],
                 frequency: FrequencyRule | None = None, interval: float = INTERVAL):
        self.engine, self.service, self.clock = engine, service, clock
        self.frequency, self.interval = frequency, interval
        self.tag = os.urandom(6).hex()
        self._stop = asyncio.Event()
        self._down: str | None = None  # what is unreachable, said once per outage
        self._filled = False  # a round filled a whole batch: more may be ready at once

    async def run(self) -> None:
        while not self._stop.is_set():
            self._filled = go_on = False
            try:
                await self.round()
                go_on = self._filled
                if self._down:
                    log.info("distributions go on: %s is reachable again", self._down)
                    self._down = None
            except (RedisError, SQLAlchemyError, OSError) as err:
                what = "Redis" if isinstance(err, RedisError) else "the records database"
                if self._down != what:
                    self._down = what
                    log.warning("distributions wait: %s is not reachable: %s", what, err)
            except Exception:
                log.exception("a distribution round failed")
            if go_on:  # a whole batch went (unpaced, or the outbox caught up): no pause before the next
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval)

    async def stop(self, task: asyncio.Task) -> None:
        self._stop.set()
        try:
            await asyncio.wait_for(task, 10)
        except TimeoutError:
            task.cancel()

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    async def round(self) -> int:
        """One pass over the due distributions; how many recipients moved."""
        moved = 0
        for distribution in await records.due_distributions(self.engine, self._now()):
            if not await self.service.store.lease_distribution(distribution.id, self.tag, LEASE):
                continue  # another worker has it
            if distribution.status == "scheduled":
                if not await records.mark_sending(self.engine, distribution.id, self._now()):
                    continue
                log.info("distribution %s (%s) is sending", distribution.id, distribution.name)
            moved += await self._invite_batch(distribution)
            if await records.finish_if_done(self.engine, distribution.id, self._now()):
                log.info("distribution %s is done", distribution.id)
        return moved

    def _batch_size(self, distribution: Distribution) -> int:
        senders = self.service.senders
        if senders is None:
            return 0
        rate = senders.pacing.rate(self.service.sender_address(distribution.survey, distribution.channel,
                                                               distribution.sender))
        return UNPACED_BATCH if rate == 0 else max(1, int(rate * BACKLOG))

    async def _invite_batch(self, distribution: Distribution) -> int:
        room = self._batch_size(distribution)
        if room <= 0:
            return 0
        # what the outbox still holds (not what the records say is queued: they learn of a
        # send only when the archiver has moved its report, a second or more later)
        room -= await self.service.senders.outbox.pending()
        if room <= 0:
            return 0
        status = (await self.service.flows()).status(distribution.survey)
        if status == PAUSED:
            return 0  # its recipients wait until the survey is active again
        recipients = await records.pending_recipients(self.engine, distribution.id, room, self._now())
        if status == CLOSED:
            return await records.set_recipients(
                self.engine, distribution.id, [(r.phone, "skipped", "survey_closed") for r in recipients],
                self._now())
        self._filled = self._filled or (room >= AT_ONCE and len(recipients) == room)
        window = None
        if distribution.quiet_from and distribution.quiet_to:
            window = QuietHours.parse({"from": distribution.quiet_from, "to": distribution.quiet_to})
        later: dict[str, datetime] = {}
        going = []
        for recipient in recipients:
            if window is not None:
                when = next_allowed(window, time_zones(recipient.phone), self.clock())
                if when is None:
                    await self._set(distribution, recipient, "skipped", NEVER)
                    continue
                if when > self.clock():
                    later[recipient.phone] = datetime.fromtimestamp(when, UTC)
                    continue
            going.append(recipient)
        if later:
            await records.postpone(self.engine, distribution.id, later)
        moved = 0
        for start in range(0, len(going), AT_ONCE):
            group = going[start:start + AT_ONCE]
            opted_out = await self._opted_out(distribution.channel, group)
            if opted_out is None:
                break  # the records database cannot say: try again next round
            claims: list[tuple[str, str]] = []
            decided = await asyncio.gather(*(self._invite(distribution, window, recipient,
                                                          recipient.phone in opted_out, claims) for recipient in group))
            # the group's states in one commit: a worker killed before it leaves them pending,
            # and the next try finds the sessions already opened (invite's "already")
            moved += await records.set_recipients(
                self.engine, distribution.id,
                [(recipient.phone, *outcome) for recipient, outcome in zip(group, decided, strict=True) if outcome],
                self._now())
            await self.service.store.release_invitations(claims)  # duplicate suppression sees the states now
            if any(outcome is None for outcome in decided):
                break  # the survey or sending is gone: wait for the next round
        return moved + len(later)

    async def _opted_out(self, channel: str, group: list[Recipient]) -> set[str] | None:
        """The group's numbers the records database says opted out (checked again: an opt-out
        may have come since the distribution was made); None when it cannot say."""
        if self.service.records is None:
            return set()
        try:
            return await self.service.records.opted_out_among(channel, [r.phone for r in group])
        except (SQLAlchemyError, OSError) as err:
            log.warning("distribution invitations wait: the records database, which keeps opt-outs, "
                        "is not reachable: %s", type(err).__name__)
            return None

    async def _invite(self, distribution: Distribution, window: QuietHours | None,
                      recipient: Recipient, opted_out: bool,
                      claims: list[tuple[str, str]] | None = None) -> tuple[str, str | None] | None:
        """Invite one recipient: the state it moves to (queued, or skipped) with the reason;
        None when nothing can be sent now. The caller writes the state."""
        channel, phone = distribution.channel, recipient.phone
        if self.frequency is not None:
            # the rule counts the records' invitations: two distributions in two workers at once
            # would both find the number under it, so one at a time invites it (as duplicates)
            if not await self.service.store.claim_invitation(phone, FREQUENCY_CLAIM, distribution.id, LEASE):
                return None  # another distribution invites this number now: the next round finds its state
            if claims is not None:
                claims.append((phone, FREQUENCY_CLAIM))
            async with self.engine.connect() as connection:
                allowed = await records.frequency_allows(connection, phone, self._now(), self.frequency)
            if not allowed:
                return "skipped", "frequency"
        if opted_out:
            return "skipped", "opted_out"
        if distribution.mode == "link":
            return await self._invite_link(distribution, recipient, claims)
        fields = {name: str(value) for name, value in (recipient.fields or {}).items()}
        if window is not None:
            fields[QUIET_FIELD] = str(window)
        return await self._invited(distribution, self.service.invite(
            distribution.survey, channel, phone, fields, distribution.id))

    async def _invite_link(self, distribution: Distribution, recipient: Recipient,
                           claims: list[tuple[str, str]] | None) -> tuple[str, str | None] | None:
        """A link distribution's recipient: skipped as a duplicate, or its invitation queued;
        the invitation's claim goes into `claims`, to drop once the recipient's state is written."""
        phone = recipient.phone
        if recipient.digest is not None:
            async with self.engine.connect() as connection:
                repeated = await records.duplicates(connection, [(phone, recipient.digest)], self._now(),
                                                    distribution.id)
            if repeated:
                return "skipped", "duplicate"
        base = self.service.settings.link_base()
        if base is None:
            log.warning("distribution %s waits: PUBLIC_BASE_URL is not set, and its links need it", distribution.id)
            return None
        if recipient.digest is not None:
            if not await self.service.store.claim_invitation(phone, recipient.digest, distribution.id, LEASE):
                return None  # another distribution sends this text now: the next round finds its state
            if claims is not None:
                claims.append((phone, recipient.digest))
        fields = {name: str(value) for name, value in (recipient.fields or {}).items()}
        link = await links.for_recipient(self.engine, distribution.survey, distribution.id, phone, fields,
                                         self._now())
        text = invitations.render(distribution.message or "", fields, *invitations.urls(base, link.token, link.opt_out))
        return await self._invited(distribution, self.service.invite_link(
            distribution.survey, phone, text, distribution.id, distribution.sender))

    @staticmethod
    async def _invited(distribution: Distribution, invite: Awaitable[str]) -> tuple[str, str | None] | None:
        """The recipient's state once `invite` ran: queued; skipped for a refusal (409); None
        (it waits, pending) when the survey was paused since the round began or the invitation
        cannot go now."""
        try:
            await invite
        except Refused as err:
            if err.reason == "survey_paused":
                return None  # paused since this round began: it waits
            if err.status == 409:
                return "skipped", err.reason
            log.warning("distribution %s waits: %s", distribution.id, err.message)
            return None
        return "queued", None

    async def _set(self, distribution: Distribution, recipient: Recipient, state: str,
                   reason: str | None = None) -> bool:
        return await records.set_recipient(self.engine, distribution.id, recipient.phone, state,
                                           reason=reason, now=self._now())
