"""Distributions in the records database: creating one (a recipient row per contact of its
list, each pending or skipped with its reason), reading and cancelling them, and the calls the
sender makes as it works through them.

A recipient's state only moves forwards (FORWARD): a final state is never replaced by queued
or sent, and sent never by queued, so a late or repeated report cannot undo a later one.
Delivery reports may still settle a send whose outcome was unknown.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import phonenumbers
from sqlalchemy import bindparam, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dsl.durations import format_duration, parse_duration
from engine.estimates import Estimate
from engine.records.contacts import _iso, _list_row
from engine.records.schema import contacts, distribution_recipients, distributions, opt_outs
from engine.records.writes import as_utc

STATUSES = ("scheduled", "sending", "done", "cancelled")
STATES = ("pending", "queued", "sent", "delivered", "undelivered", "failed", "skipped", "unknown",
          "cancelled")
SKIP_REASONS = ("opted_out", "open_session", "invalid_number", "frequency", "whatsapp_window",
                "quiet_hours_never", "unknown_survey", "duplicate")
MODES = ("2way", "link")  # the survey's conversation, or an invitation carrying a web link
# Duplicate suppression of link invitations: the same text to the same number within this long
# goes once. Its memory is the records database's recipient rows (their `digest` and the time of
# their state), not a Redis key with a TTL: the rows already record every invitation and when
# (the frequency rule counts them), they outlive a Redis restored from an older snapshot, and
# the skip is written where the recipient's other outcomes are.
DUPLICATE_WINDOW = timedelta(hours=24)
FINAL = frozenset({"delivered", "undelivered", "failed", "skipped", "unknown", "cancelled"})
# each state, and the states it may replace
# What Twilio reports moves a `cancelled` recipient too: a cancel can land while the distributor
# commits its invitation (the recipient read as pending a moment before), and then the
# invitation went, and the records say so.
FORWARD = {
    "queued": {"pending"},
    "sent": {"pending", "queued", "unknown", "cancelled"},  # from unknown: an operator had it resent
    "delivered": {"pending", "queued", "sent", "unknown", "cancelled"},
    "undelivered": {"pending", "queued", "sent", "unknown", "cancelled"},
    "failed": {"pending", "queued", "sent", "unknown", "cancelled"},
    "skipped": {"pending", "queued"},
    "unknown": {"pending", "queued", "cancelled"},
    "cancelled": {"pending", "queued"},
}
INVITED = ("queued", "sent", "delivered", "undelivered", "unknown")  # what the frequency rule counts
BATCH = 1000
CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


class UnknownDistribution(LookupError):
    def __init__(self, distribution_id: str):
        super().__init__(f"there is no distribution '{distribution_id}'")


class NotCancellable(Exception):
    def __init__(self, distribution_id: str, status: str):
        super().__init__(f"distribution {distribution_id} is {status}: only a scheduled or sending "
                         "distribution can be cancelled")
        self.status = status


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class FrequencyRule:
    """At most `count` invitations per number within `seconds`, across distributions."""

    count: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> FrequencyRule:
        """'1/7d' (N/duration, as flows write durations); ValueError saying what it takes."""
        count, slash, period = (text or "").strip().partition("/")
        seconds = parse_duration(period) if slash else None
        if not count.strip().isdigit() or int(count) < 1 or not seconds:
            raise ValueError(f"'{text}' is not a contact frequency: write N/PERIOD, at most N "
                             "invitations per number in PERIOD, e.g. 1/7d, 2/30d or 3/12h")
        return cls(int(count), seconds)

    def __str__(self) -> str:
        return f"{self.count}/{format_duration(self.seconds)}"


def clock_time(text: object) -> str:
    """An "HH:MM" time of day (24-hour); ValueError otherwise."""
    if not isinstance(text, str) or not CLOCK.fullmatch(text):
        raise ValueError(f"{text!r} is not a time of day: write HH:MM, 24-hour, e.g. 09:00 or 20:30")
    return text


def new_id() -> str:
    return "DS" + os.urandom(8).hex()


# ---------------------------------------------------------------- the rows, as the sender sees them


@dataclass(frozen=True)
class Distribution:
    id: str
    name: str
    survey: str
    list_name: str
    channel: str
    send_at: datetime
    quiet_from: str | None
    quiet_to: str | None
    status: str
    estimate: dict
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    mode: str = "2way"
    message: str | None = None  # a link distribution's invitation
    sender: str | None = None  # its sender, when not the survey's

    @classmethod
    def of(cls, row) -> Distribution:
        return cls(row.id, row.name, row.survey, row.list_name, row.channel, as_utc(row.send_at),
                   row.quiet_from, row.quiet_to, row.status, row.estimate, as_utc(row.created_at),
                   row.started_at and as_utc(row.started_at), row.finished_at and as_utc(row.finished_at),
                   row.mode, row.message, row.sender)


@dataclass(frozen=True)
class Recipient:
    phone: str
    email: str | None
    fields: dict
    digest: str | None = None  # a link invitation's text, hashed (duplicate suppression)


# ---------------------------------------------------------------- creating


@dataclass(frozen=True)
class NewDistribution:
    name: str
    survey: str
    list_name: str
    channel: str
    send_at: datetime
    quiet_from: str | None = None
    quiet_to: str | None = None
    mode: str = "2way"
    message: str | None = None
    sender: str | None = None


def valid_for(phone: str) -> bool:
    """True when phonenumbers reads the number as a valid one (a list may hold numbers its
    metadata has since dropped, or written by hand into the database)."""
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(phone, None))
    except phonenumbers.NumberParseException:
        return False


async def frequency_allows(connection: AsyncConnection, phone: str, now: datetime,
                           rule: FrequencyRule | None) -> bool:
    """True when `phone` may get one more invitation at `now` under `rule` (None: no rule)."""
    if rule is None:
        return True
    return (await _invited(connection, [phone], now, rule)).get(phone, 0) < rule.count


async def duplicates(connection: AsyncConnection, invitations: list[tuple[str, str]], now: datetime,
                     distribution_id: str | None = None) -> set[str]:
    """The numbers among (phone, digest) that another distribution invited with the same text
    within DUPLICATE_WINDOW before `now`."""
    if not invitations:
        return set()
    table = distribution_recipients
    wanted = set(invitations)
    where = [table.c.phone.in_([phone for phone, _ in invitations]),
             table.c.digest.in_({digest for _, digest in invitations}),
             table.c.state.in_(INVITED), table.c.updated_at > now - DUPLICATE_WINDOW]
    if distribution_id is not None:
        where.append(table.c.distribution_id != distribution_id)
    rows = await connection.execute(select(table.c.phone, table.c.digest).where(*where))
    return {phone for phone, digest in rows.all() if (phone, digest) in wanted}


async def _invited(connection: AsyncConnection, phones: list[str], now: datetime,
                   rule: FrequencyRule) -> dict[str, int]:
    """Invitations per number within the rule's period before `now`."""
    table = distribution_recipients
    rows = await connection.execute(
        select(table.c.phone, func.count()).where(
            table.c.phone.in_(phones), table.c.state.in_(INVITED),
            table.c.updated_at > now - timedelta(seconds=rule.seconds))
        .group_by(table.c.phone))
    return dict(rows.all())


async def create(engine: AsyncEngine, spec: NewDistribution, segments: Callable[[str, dict], int],
                 estimate: Estimate, now: datetime, rule: FrequencyRule | None = None,
                 dry_run: bool = False, approve: Callable[[Estimate], None] | None = None,
                 digest: Callable[[dict], str] | None = None) -> str | None:
    """Write the distribution and a recipient per contact of its list, in one transaction
    (a dry run writes nothing); its id (None for a dry run). `segments(phone, fields)` gives
    the SMS segments of a contact's invitation (engine.estimates.invitation_segments, called
    in a thread a batch at a time); `estimate` is filled as the contacts are read.
    UnknownList when the list does not exist. `approve`, given the finished estimate before
    anything is committed, may refuse it by raising (then nothing is written). `digest(fields)`,
    for a link distribution: its invitation's text for a contact, hashed; a contact invited
    with the same text within DUPLICATE_WINDOW is skipped as a duplicate."""
    distribution_id = None if dry_run else new_id()
    async with engine.begin() as connection:
        found = await _list_row(connection, spec.list_name)
        if distribution_id is not None:
            await connection.execute(distributions.insert().values(
                id=distribution_id, name=spec.name, survey=spec.survey, list_id=found.id,
                list_name=found.name, channel=spec.channel, send_at=spec.send_at,
                quiet_from=spec.quiet_from, quiet_to=spec.quiet_to, status="scheduled",
                estimate={}, created_at=now, mode=spec.mode, message=spec.message, sender=spec.sender))
        after = 0
        while True:
            batch = (await connection.execute(
                select(contacts.c.id, contacts.c.phone, contacts.c.email, contacts.c.fields)
                .where(contacts.c.list_id == found.id, contacts.c.id > after)
                .order_by(contacts.c.id).limit(BATCH))).all()
            if not batch:
                break
            after = batch[-1].id
            rows = await _recipients(connection, spec.channel, batch, segments, estimate, now, rule, digest)
            if distribution_id is not None:
                await connection.execute(distribution_recipients.insert(),
                                         [{**row, "distribution_id": distribution_id} for row in rows])
        if approve is not None:
            approve(estimate)  # raising rolls the transaction back
        if distribution_id is not None:
            await connection.execute(update(distributions).where(distributions.c.id == distribution_id)
                                     .values(estimate={**estimate.to_json(), "fields": list(found.fields)}))
    return distribution_id


async def _recipients(connection: AsyncConnection, channel: str, batch: list, segments,
                      estimate: Estimate, now: datetime, rule: FrequencyRule | None,
                      digest: Callable[[dict], str] | None) -> list[dict]:
    """One batch of contacts as recipient rows: pending, or skipped with the reason."""
    phones = [row.phone for row in batch]
    opted = set((await connection.scalars(select(opt_outs.c.phone).where(
        opt_outs.c.channel == channel, opt_outs.c.phone.in_(phones), opt_outs.c.opted_out.is_(True)))).all())
    invited = await _invited(connection, phones, now, rule) if rule is not None else {}
    digests = {row.phone: digest(row.fields) for row in batch} if digest is not None else {}
    repeated = await duplicates(connection, list(digests.items()), now)
    reasons = {}
    for row in batch:
        if not valid_for(row.phone):
            reasons[row.phone] = "invalid_number"
        elif row.phone in opted:
            reasons[row.phone] = "opted_out"
        elif rule is not None and invited.get(row.phone, 0) >= rule.count:
            reasons[row.phone] = "frequency"
        elif row.phone in repeated:
            reasons[row.phone] = "duplicate"
    sending = [row for row in batch if row.phone not in reasons]
    counted = await asyncio.to_thread(lambda: [segments(row.phone, row.fields) for row in sending])
    for row, count in zip(sending, counted, strict=True):
        estimate.add(row.phone, count)
    for reason in reasons.values():
        estimate.skip(reason)
    return [{"phone": row.phone, "email": row.email, "fields": row.fields,
             "state": "skipped" if row.phone in reasons else "pending",
             "reason": reasons.get(row.phone), "sid": None, "error_code": None, "updated_at": now,
             "digest": digests.get(row.phone)}
            for row in batch]


# ---------------------------------------------------------------- reading and cancelling


async def _row(connection: AsyncConnection, distribution_id: str):
    row = (await connection.execute(
        select(distributions).where(distributions.c.id == distribution_id))).first()
    if row is None:
        raise UnknownDistribution(distribution_id)
    return row


def _described(row, counts: dict[str, int] | None = None) -> dict:
    estimate = dict(row.estimate)
    fields = estimate.pop("fields", [])
    described = {
        "id": row.id, "name": row.name, "survey": row.survey, "list": row.list_name,
        "channel": row.channel, "mode": row.mode, "status": row.status, "send_at": _iso(row.send_at),
        "quiet_hours": ({"from": row.quiet_from, "to": row.quiet_to} if row.quiet_from else None),
        "created_at": _iso(row.created_at),
        "started_at": row.started_at and _iso(row.started_at),
        "finished_at": row.finished_at and _iso(row.finished_at)}
    if row.mode == "link":
        described.update(message=row.message, sender=row.sender)
    if counts is not None:
        described.update(counts={state: counts.get(state, 0) for state in STATES},
                         estimate=estimate, fields=fields)
    return described


async def all_distributions(engine: AsyncEngine) -> list[dict]:
    """Every distribution, newest first."""
    async with engine.connect() as connection:
        rows = (await connection.execute(select(distributions).order_by(
            distributions.c.created_at.desc(), distributions.c.id))).all()
    return [_described(row) for row in rows]


async def describe(engine: AsyncEngine, distribution_id: str, now: datetime | None = None) -> dict:
    """A distribution, its recipients counted by state (every state) and its estimate; with
    `now`, also the pending recipients waiting for their quiet hours (`waiting`: how many,
    and when the first window opens)."""
    table = distribution_recipients
    async with engine.connect() as connection:
        row = await _row(connection, distribution_id)
        counts = dict((await connection.execute(
            select(table.c.state, func.count()).where(table.c.distribution_id == distribution_id)
            .group_by(table.c.state))).all())
        waiting = None
        if now is not None:
            waiting = (await connection.execute(
                select(func.count(), func.min(table.c.not_before)).where(
                    table.c.distribution_id == distribution_id, table.c.state == "pending",
                    table.c.not_before > now))).one()
    described = _described(row, counts)
    if waiting is not None:
        described["waiting"] = {"recipients": waiting[0],
                                "until": _iso(waiting[1]) if waiting[1] is not None else None}
    return described


async def ensure_exists(engine: AsyncEngine, distribution_id: str) -> None:
    """UnknownDistribution when there is no such distribution."""
    async with engine.connect() as connection:
        await _row(connection, distribution_id)


async def field_names(engine: AsyncEngine, distribution_id: str) -> list[str]:
    async with engine.connect() as connection:
        return list((await _row(connection, distribution_id)).estimate.get("fields", []))


async def recipients_of(engine: AsyncEngine, distribution_id: str) -> AsyncIterator[dict]:
    """Every recipient, by number, read BATCH at a time (UnknownDistribution first)."""
    async with engine.connect() as connection:
        await _row(connection, distribution_id)
    table, after = distribution_recipients, ""
    while True:
        async with engine.connect() as connection:
            rows = (await connection.execute(
                select(table).where(table.c.distribution_id == distribution_id, table.c.phone > after)
                .order_by(table.c.phone).limit(BATCH))).all()
        for row in rows:
            yield {"phone": row.phone, "email": row.email, "state": row.state, "reason": row.reason,
                   "sid": row.sid, "error_code": row.error_code, "updated_at": _iso(row.updated_at),
                   "not_before": _iso(row.not_before) if row.not_before else None, "fields": row.fields}
        if len(rows) < BATCH:
            return
        after = rows[-1].phone


async def cancel(engine: AsyncEngine, distribution_id: str, now: datetime) -> dict:
    """Cancel a scheduled or sending distribution and its pending recipients (NotCancellable
    when it is done or cancelled already); what it cancelled."""
    async with engine.begin() as connection:
        row = await _row(connection, distribution_id)
        changed = await connection.execute(
            update(distributions).where(distributions.c.id == distribution_id,
                                        distributions.c.status.in_(("scheduled", "sending")))
            .values(status="cancelled", finished_at=now))
        if changed.rowcount == 0:
            raise NotCancellable(distribution_id, row.status)
        recipients = await connection.execute(
            update(distribution_recipients)
            .where(distribution_recipients.c.distribution_id == distribution_id,
                   distribution_recipients.c.state == "pending")
            .values(state="cancelled", updated_at=now))
    return {"id": distribution_id, "status": "cancelled", "cancelled": recipients.rowcount}


# ---------------------------------------------------------------- what the sender calls


async def due_distributions(engine: AsyncEngine, now: datetime) -> list[Distribution]:
    """Scheduled ones whose time has come, and those sending, oldest send time first."""
    table = distributions
    async with engine.connect() as connection:
        rows = (await connection.execute(select(table).where(
            ((table.c.status == "scheduled") & (table.c.send_at <= now)) | (table.c.status == "sending"))
            .order_by(table.c.send_at, table.c.id))).all()
    return [Distribution.of(row) for row in rows]


async def mark_sending(engine: AsyncEngine, distribution_id: str, now: datetime) -> bool:
    """scheduled -> sending; False when it was not scheduled (another worker took it, or it
    was cancelled)."""
    async with engine.begin() as connection:
        changed = await connection.execute(
            update(distributions).where(distributions.c.id == distribution_id,
                                        distributions.c.status == "scheduled")
            .values(status="sending", started_at=now))
    return changed.rowcount > 0


async def pending_recipients(engine: AsyncEngine, distribution_id: str, limit: int,
                             now: datetime | None = None) -> list[Recipient]:
    """Up to `limit` pending recipients; with `now`, only those not waiting for later
    (their quiet hours: `postpone`)."""
    table = distribution_recipients
    where = [table.c.distribution_id == distribution_id, table.c.state == "pending"]
    if now is not None:
        where.append(or_(table.c.not_before.is_(None), table.c.not_before <= now))
    async with engine.connect() as connection:
        rows = (await connection.execute(
            select(table.c.phone, table.c.email, table.c.fields, table.c.digest).where(*where)
            .order_by(table.c.phone).limit(limit))).all()
    return [Recipient(row.phone, row.email, row.fields, row.digest) for row in rows]


async def postpone(engine: AsyncEngine, distribution_id: str, until: dict[str, datetime]) -> None:
    """Pending recipients (phone -> when) wait until then: outside their quiet hours now."""
    table = distribution_recipients
    async with engine.begin() as connection:
        for phone, when in until.items():
            await connection.execute(update(table).where(
                table.c.distribution_id == distribution_id, table.c.phone == phone,
                table.c.state == "pending").values(not_before=when))


async def set_recipient(engine: AsyncEngine, distribution_id: str, phone: str, state: str, *,
                        reason: str | None = None, sid: str | None = None,
                        error_code: int | None = None, now: datetime) -> bool:
    """Move a recipient to `state` if that is forwards from where it stands (FORWARD); False
    when it stayed (a later state was there already, or there is no such recipient). A sid or
    reason given replaces the stored one; one not given keeps it."""
    async with engine.begin() as connection:
        return await _set_state(connection, distribution_id, phone, state, reason=reason, sid=sid,
                                error_code=error_code, now=now)


async def set_recipients(engine: AsyncEngine, distribution_id: str,
                         changes: list[tuple[str, str, str | None]], now: datetime) -> int:
    """set_recipient for many (phone, state, reason) in one transaction (one commit, and one
    statement per state and reason, not one per recipient); how many moved."""
    together: dict[tuple[str, str | None], list[str]] = {}
    for phone, state, reason in changes:
        if state not in FORWARD:
            raise ValueError(f"a recipient cannot be set to {state!r}: one of {', '.join(FORWARD)}")
        together.setdefault((state, reason), []).append(phone)
    table, moved = distribution_recipients, 0
    async with engine.begin() as connection:
        for (state, reason), phones in together.items():
            values = {"state": state, "updated_at": now, **({"reason": reason} if reason is not None else {})}
            changed = await connection.execute(
                update(table).where(table.c.distribution_id == distribution_id, table.c.phone.in_(phones),
                                    or_(*(table.c.state == literal(earlier) for earlier in sorted(FORWARD[state])))).values(values))
            moved += changed.rowcount
    return moved


async def _set_state(connection: AsyncConnection, distribution_id: str, phone: str, state: str, *,
                     reason: str | None, sid: str | None, error_code: int | None, now: datetime) -> bool:
    if state not in FORWARD:
        raise ValueError(f"a recipient cannot be set to {state!r}: one of {', '.join(FORWARD)}")
    table = distribution_recipients
    values = {"state": state, "updated_at": now,
              **{name: value for name, value in (("reason", reason), ("sid", sid), ("error_code", error_code))
                 if value is not None}}
    changed = await connection.execute(
        update(table).where(table.c.distribution_id == distribution_id, table.c.phone == phone,
                            or_(*(table.c.state == literal(earlier) for earlier in sorted(FORWARD[state])))).values(values))
    return changed.rowcount > 0


# What a report on the deliveries stream (engine.redis.store.DELIVERIES) makes of a recipient:
# the outbox's end of its invitation (sent, failed, unknown) and Twilio's delivery statuses.
# Statuses before `sent` (queued, accepted, sending...) change nothing.
REPORTED = {"sent": "sent", "failed": "failed", "unknown": "unknown", "delivered": "delivered",
            "read": "delivered", "undelivered": "undelivered"}


async def apply_deliveries(connection: AsyncConnection, reports: list[dict]) -> int:
    """Move each reported recipient forwards (the archiver calls this with a batch of the
    deliveries stream; a report applied twice changes nothing the second time), one statement
    per state with a parameter set per report; how many reports were applied."""
    by_state: dict[str, list[dict]] = {}
    for report in reports:
        state = REPORTED.get(report.get("state"))
        if state is None:
            continue
        code = report.get("error_code")
        reason = report.get("reason") or (f"twilio_{code}" if code else None)
        by_state.setdefault(state, []).append({
            "b_distribution": report["distribution"], "b_phone": report["phone"],
            "b_reason": reason and reason[:64], "b_sid": report.get("sid") or None,
            "b_code": int(code) if code else None,
            "b_at": datetime.fromtimestamp(float(report["at"]), UTC)})
    table = distribution_recipients
    for state in FORWARD:  # a batch's reports of one recipient: the later state holds (FORWARD)
        if state not in by_state:
            continue
        await connection.execute(update(table).where(
            table.c.distribution_id == bindparam("b_distribution"), table.c.phone == bindparam("b_phone"),
            or_(*(table.c.state == literal(earlier) for earlier in sorted(FORWARD[state])))).values(
            state=state, updated_at=bindparam("b_at", type_=table.c.updated_at.type),
            reason=func.coalesce(bindparam("b_reason", type_=table.c.reason.type), table.c.reason),
            sid=func.coalesce(bindparam("b_sid", type_=table.c.sid.type), table.c.sid),
            error_code=func.coalesce(bindparam("b_code", type_=table.c.error_code.type), table.c.error_code)),
            by_state[state])
    return sum(len(batch) for batch in by_state.values())


async def finish_if_done(engine: AsyncEngine, distribution_id: str, now: datetime) -> bool:
    """sending -> done when no recipient is pending or queued any more; True when it finished."""
    table = distribution_recipients
    async with engine.begin() as connection:
        waiting = await connection.scalar(select(func.count()).where(
            table.c.distribution_id == distribution_id, table.c.state.in_(("pending", "queued"))))
        if waiting:
            return False
        changed = await connection.execute(
            update(distributions).where(distributions.c.id == distribution_id,
                                        distributions.c.status == "sending")
            .values(status="done", finished_at=now))
    return changed.rowcount > 0

