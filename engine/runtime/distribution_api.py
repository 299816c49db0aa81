"""The admin API of distributions: create one (or estimate it: ?dry_run=true), list them,
describe one with its counts, export its recipients, cancel it. The work is
engine.records.distributions'; these handlers check the request, render each contact's
invitation with the server's flows (engine.estimates) and turn refusals into status codes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from engine import invitations
from engine.estimates import Estimate, NoInvitation, invitation_segments
from engine.records import contacts, credits, distributions
from engine.records.distributions import NewDistribution, clock_time
from engine.runtime.appkeys import CLOCK, PRICE, RATES, REGISTRY, RESPONSES, SETTINGS, error
from engine.runtime.contact_exports import csv_line
from engine.runtime.exports import cell, jsonl_line
from engine.runtime.status_api import not_active
from engine.runtime.untrusted import UntrustedInput, loggable, parse_json
from engine.sms.compat import ALPHANUMERIC_RULE, sender_kind
from engine.sms.credits import json_number

log = logging.getLogger("canvass.distributions")

CHANNELS = ("sms", "whatsapp")
FIELDS = ("name", "survey", "list", "channel", "send_at", "quiet_hours", "mode", "message", "sender")
PAST_GRACE = timedelta(minutes=1)  # a send_at this far in the past still means "now"
RECIPIENT_COLUMNS = ("phone", "email", "state", "reason", "sid", "error_code", "updated_at", "not_before")
YES, NO = ("1", "true", "yes"), ("0", "false", "no")
EXAMPLE_NUMBER = "+15005550006"  # renders an invitation when only the channel matters


def _engine(request: web.Request):
    return request.app[RESPONSES].engine


def _now(request: web.Request) -> datetime:
    return datetime.fromtimestamp(request.app[CLOCK](), UTC)


def records_unavailable(err: Exception) -> web.Response:
    log.warning("distributions: the records database is unreachable: %s", type(err).__name__)
    return error(503, "records_unavailable", "the records database is not reachable, try again")


def _text(body: dict, name: str, longest: int, default: str | None = None) -> str:
    value = body.get(name, default)
    if not isinstance(value, str) or not value.strip():
        raise UntrustedInput(400, f"bad_{name}", f"'{name}' must be text (1 to {longest} characters)")
    value = value.strip()
    if len(value) > longest or any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise UntrustedInput(400, f"bad_{name}", f"'{name}' must be 1 to {longest} characters, "
                                                 "with no control character")
    return value


def send_time(value: object, now: datetime) -> datetime:
    """`send_at` as aware UTC: ISO 8601 with its offset (or Z); None: now. A time more than
    PAST_GRACE ago is refused (it is surely a mistake); a time just past means now."""
    if value is None:
        return now
    if not isinstance(value, str):
        raise UntrustedInput(400, "bad_send_at", "'send_at' must be an ISO 8601 time, e.g. "
                                                 "2030-01-31T09:00:00Z or 2030-01-31T09:00:00+01:00")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise UntrustedInput(400, "bad_send_at", f"'send_at' {loggable(value)!r} is not an ISO 8601 time, "
                                                 "e.g. 2030-01-31T09:00:00Z") from None
    if parsed.tzinfo is None:
        raise UntrustedInput(400, "bad_send_at", "'send_at' needs its UTC offset (Z or +01:00): "
                                                 "without one it could mean any time zone")
    try:
        parsed = parsed.astimezone(UTC)
    except OverflowError:  # its offset takes it out of the calendar (year 1 or 9999)
        raise UntrustedInput(400, "bad_send_at", f"'send_at' {loggable(value)!r} is out of range") from None
    if parsed < now - PAST_GRACE:
        raise UntrustedInput(400, "send_at_past", f"'send_at' {parsed.isoformat()} is in the past; "
                                                  "leave it out to send now")
    return max(parsed, now)


def quiet_hours(value: object) -> tuple[str | None, str | None]:
    """{"from": "HH:MM", "to": "HH:MM"} (from later than to: the window crosses midnight)."""
    if value is None:
        return None, None
    if not isinstance(value, dict) or set(value) != {"from", "to"}:
        raise UntrustedInput(400, "bad_quiet_hours", "'quiet_hours' must be an object with 'from' "
                                                     "and 'to', e.g. {\"from\": \"09:00\", \"to\": \"20:00\"}")
    try:
        start, end = clock_time(value["from"]), clock_time(value["to"])
    except ValueError as err:
        raise UntrustedInput(400, "bad_quiet_hours", f"'quiet_hours': {err}") from None
    if start == end:
        raise UntrustedInput(400, "bad_quiet_hours", "'quiet_hours' from and to are the same time: "
                                                     "the window would be empty")
    return start, end


def link_options(body: dict) -> tuple[str, str | None, str | None]:
    """The mode, the invitation message (link mode only: it must carry ${l://SurveyLink}) and
    the sender: an alphanumeric ID only in link mode, as `canvass check` says of a flow's
    sender (E019: alphanumeric IDs are one-way)."""
    mode = body.get("mode", "2way")
    if mode not in distributions.MODES:
        raise UntrustedInput(400, "bad_mode", "'mode' must be 2way (the survey's conversation) or link "
                                              "(an invitation carrying each recipient's web link)")
    message = body.get("message")
    if mode == "link":
        problem = invitations.problem(message)
        if problem is not None:
            raise UntrustedInput(400, "bad_message", problem)
        if body.get("channel", "sms") != "sms":
            raise UntrustedInput(400, "bad_channel", "a link distribution's invitations go by SMS: "
                                                     "leave 'channel' out or write sms")
    elif message is not None:
        raise UntrustedInput(400, "bad_message", "'message' is a link distribution's invitation: a 2-way "
                                                 "distribution sends the survey's first question; add "
                                                 "\"mode\": \"link\" or leave 'message' out")
    sender = body.get("sender")
    if sender is None:
        return mode, message, None
    if not isinstance(sender, str) or not sender.strip():
        raise UntrustedInput(400, "bad_sender", "'sender' must be a phone number in E.164 form, a short "
                                                "code, a messaging service (MG...) or, for a link "
                                                "distribution, an alphanumeric ID")
    kind = sender_kind(sender)
    if kind == "alphanumeric" and mode != "link":
        raise UntrustedInput(400, "one_way_sender", f"'sender' {loggable(sender)!r} is an alphanumeric ID, which "
                                                    "can only send one-way: respondents cannot reply to it. "
                                                    "Send a link distribution (\"mode\": \"link\"), or send "
                                                    "from a phone number, short code or messaging service")
    if mode != "link":
        raise UntrustedInput(400, "bad_sender", "a 2-way distribution sends from the survey's own sender "
                                                "(the flow's `sender`, which `canvass check` checks), so its "
                                                "reminders and replies come from the same address: leave "
                                                "'sender' out")
    if kind == "bad_alphanumeric":
        raise UntrustedInput(400, "bad_sender", f"'sender' {loggable(sender)!r} breaks the alphanumeric "
                                                f"sender ID rules: {ALPHANUMERIC_RULE}")
    if kind.startswith("bad_") or kind == "whatsapp":
        raise UntrustedInput(400, "bad_sender", f"'sender' {loggable(sender)!r} is not an SMS sender: write a "
                                                "phone number in E.164 form (+14155550100), a short code, "
                                                "a messaging service (MG...) or an alphanumeric ID")
    return mode, message, sender.strip()


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value not in YES + NO:
        raise UntrustedInput(400, f"bad_{name}", f"{name} must be true or false")
    return value in YES


async def admin_create(request: web.Request) -> web.Response:
    now = _now(request)
    try:
        dry_run = _flag(request, "dry_run")
        body = parse_json(await request.read(), request.charset)
        if not isinstance(body, dict):
            raise UntrustedInput(400, "bad_json", "the body must be a JSON object")
        unknown = sorted(set(body) - set(FIELDS))
        if unknown:
            raise UntrustedInput(400, "unknown_field", f"unknown field(s) {', '.join(map(loggable, unknown))}; "
                                                       f"a distribution takes {', '.join(FIELDS)}")
        survey = _text(body, "survey", 200)
        try:
            list_name = contacts.list_name(body.get("list")) if isinstance(body.get("list"), str) else None
        except contacts.ListNameError as err:
            raise UntrustedInput(400, "bad_list", f"'list': {err}") from None
        if list_name is None:
            raise UntrustedInput(400, "bad_list", "'list' must be the name of a contact list")
        name = _text(body, "name", 200, default=f"{survey} to {list_name}")
        channel = body.get("channel", "sms")
        if channel not in CHANNELS:
            raise UntrustedInput(400, "bad_channel", f"'channel' must be one of {', '.join(CHANNELS)}")
        send_at = send_time(body.get("send_at"), now)
        quiet_from, quiet_to = quiet_hours(body.get("quiet_hours"))
        mode, message, sender = link_options(body)
    except UntrustedInput as err:
        return error(err.status, err.reason, err.message)
    flow = request.app[REGISTRY].get(survey)
    if flow is None:
        return error(404, "unknown_survey", f"there is no survey '{survey}'")
    if not dry_run and (refused := await not_active(request, survey)) is not None:
        return refused  # an estimate is still shown
    at = send_at.timestamp()
    digest = None
    if mode == "link":
        base = request.app[SETTINGS].link_base()
        if base is None:
            return error(409, "no_public_url", "a link distribution needs PUBLIC_BASE_URL, the address its "
                         "links point to (the server's public https address)")

        def segments(phone: str, fields: dict) -> int:
            return invitations.segments(message, fields, base)

        def digest(fields: dict) -> str:
            return invitations.digest(message, fields)
    else:
        try:
            invitation_segments(flow, channel, EXAMPLE_NUMBER, {}, at)
        except NoInvitation:
            return error(409, "no_whatsapp_template", f"survey '{survey}' has no whatsapp_template: outside "
                         "WhatsApp's 24-hour window only an approved template can invite")

        def segments(phone: str, fields: dict) -> int:
            return invitation_segments(flow, channel, phone, fields, at)

    estimate = Estimate(price=request.app.get(PRICE))
    spec = NewDistribution(name, survey, list_name, channel, send_at, quiet_from, quiet_to, mode, message, sender)
    try:
        approve = None
        if request.app.get(RATES) is not None and not dry_run:
            approve = _affordable(await credits.balance(_engine(request)))
        created = await distributions.create(_engine(request), spec, segments, estimate, now,
                                             request.app[SETTINGS].contact_frequency, dry_run=dry_run,
                                             approve=approve, digest=digest)
    except contacts.UnknownList as err:
        return error(404, "unknown_list", str(err))
    except TooDear as err:
        return error(402, "insufficient_credits", str(err), needed=json_number(err.needed),
                     balance=json_number(err.balance), estimate=estimate.to_json())
    except (SQLAlchemyError, OSError) as err:
        return records_unavailable(err)
    if dry_run:
        return web.json_response({"estimate": estimate.to_json()})
    log.info("distribution %s: survey %s to list %s at %s", created, survey, loggable(list_name),
             send_at.isoformat())
    return web.json_response({"id": created, "status": "scheduled", "estimate": estimate.to_json()},
                             status=201)


class TooDear(Exception):
    """A distribution whose estimate exceeds the credits balance."""

    def __init__(self, needed: Decimal, balance: Decimal):
        super().__init__(f"the distribution needs {json_number(needed)} credits and the balance is "
                         f"{json_number(balance)}: add credits (`canvass credits add N`) or send to fewer numbers")
        self.needed, self.balance = needed, balance


def _affordable(balance: Decimal) -> Callable[[Estimate], None]:
    def approve(estimate: Estimate) -> None:
        needed = estimate.to_json()["credits"]
        if needed is not None and Decimal(str(needed)) > balance:
            raise TooDear(Decimal(str(needed)), balance)
    return approve


async def admin_distributions(request: web.Request) -> web.Response:
    try:
        return web.json_response({"distributions": await distributions.all_distributions(_engine(request))})
    except (SQLAlchemyError, OSError) as err:
        return records_unavailable(err)


def _distribution_id(request: web.Request) -> str:
    """The id the path names. One no distribution could have (a NUL, non-ASCII) is unknown at
    once: PostgreSQL refuses a NUL in a query's text, which would read as the database being down."""
    distribution_id = request.match_info["id"]
    if not (0 < len(distribution_id) <= 64 and all(c.isascii() and (c.isalnum() or c in "-_")
                                                   for c in distribution_id)):
        raise distributions.UnknownDistribution(loggable(distribution_id))
    return distribution_id


async def existing_distribution(request: web.Request) -> str:
    """The request's distribution id, once the records database knows it (UnknownDistribution
    otherwise; SQLAlchemyError or OSError when it cannot say)."""
    distribution_id = _distribution_id(request)
    await distributions.ensure_exists(_engine(request), distribution_id)
    return distribution_id


async def admin_distribution(request: web.Request) -> web.Response:
    try:
        return web.json_response(await distributions.describe(_engine(request), _distribution_id(request),
                                                              _now(request)))
    except distributions.UnknownDistribution as err:
        return error(404, "unknown_distribution", str(err))
    except (SQLAlchemyError, OSError) as err:
        return records_unavailable(err)


async def admin_cancel(request: web.Request) -> web.Response:
    try:
        return web.json_response(await distributions.cancel(
            _engine(request), _distribution_id(request), _now(request)))
    except distributions.UnknownDistribution as err:
        return error(404, "unknown_distribution", str(err))
    except distributions.NotCancellable as err:
        return error(409, "not_cancellable", str(err), distribution_status=err.status)
    except (SQLAlchemyError, OSError) as err:
        return records_unavailable(err)


def recipients_csv_header(fields: list[str]) -> str:
    return csv_line([*RECIPIENT_COLUMNS, *(cell(name) for name in fields)])


def recipients_csv_row(fields: list[str], recipient: dict) -> str:
    values = recipient["fields"]
    return csv_line([recipient["phone"], *(cell(recipient[column]) for column in RECIPIENT_COLUMNS[1:]),
                     *(cell(values.get(name)) for name in fields)])


async def admin_recipients(request: web.Request) -> web.StreamResponse:
    form = request.query.get("format", "jsonl")
    if form not in ("jsonl", "csv"):
        return error(400, "bad_format", "format must be jsonl or csv")
    engine = _engine(request)
    try:
        distribution_id = _distribution_id(request)
        fields = await distributions.field_names(engine, distribution_id)
    except distributions.UnknownDistribution as err:
        return error(404, "unknown_distribution", str(err))
    except (SQLAlchemyError, OSError) as err:
        return records_unavailable(err)
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8" if form == "csv" else "application/x-ndjson; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{distribution_id}.{form}"'})
    await response.prepare(request)
    try:
        if form == "csv":
            await response.write(recipients_csv_header(fields).encode())
        async for recipient in distributions.recipients_of(engine, distribution_id):
            line = recipients_csv_row(fields, recipient) if form == "csv" else jsonl_line(recipient)
            await response.write(line.encode())
    except (SQLAlchemyError, OSError, distributions.UnknownDistribution) as err:
        log.warning("export of the recipients of %s cut short: %s", loggable(distribution_id),
                    type(err).__name__)
        request.transport.abort()  # the status went out: a cut body, never a short file taken whole
        return response
    await response.write_eof()
    return response


def add_distribution_routes(app: web.Application) -> None:
    app.router.add_post("/admin/distributions", admin_create)
    app.router.add_get("/admin/distributions", admin_distributions)
    app.router.add_get("/admin/distributions/{id}", admin_distribution)
    app.router.add_get("/admin/distributions/{id}/recipients", admin_recipients)
    app.router.add_post("/admin/distributions/{id}/cancel", admin_cancel)

