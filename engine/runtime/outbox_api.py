"""The admin API of the outbox: what waits to be sent, the messages whose outcome is unknown
(the connection broke after Twilio was asked), and resending one when an operator decides to.

Twilio has no idempotency key for creating a message, so Canvass never resends an unknown
message on its own: one that did go would reach the respondent twice."""

from __future__ import annotations

from aiohttp import web
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from engine.records.distributions import UnknownDistribution
from engine.responses import iso
from engine.runtime.appkeys import CLOCK, SERVICE, error
from engine.runtime.distribution_api import existing_distribution, records_unavailable


def _senders(request: web.Request):
    return request.app[SERVICE].senders


async def admin_outbox(request: web.Request) -> web.Response:
    """{"waiting": how many messages wait or are being sent, "unknown": [...]}."""
    senders = _senders(request)
    if senders is None:
        return error(404, "sending_disabled", "this server sends nothing: no Twilio credentials (or sandbox)")
    try:
        waiting = await senders.outbox.pending()
        unknown = await senders.outbox.unknown()
    except RedisError as err:
        return error(503, "redis_unavailable", f"Redis did not answer: {err}")
    return web.json_response({"waiting": waiting,
                              "unknown": [{**entry, "at": iso(entry["at"])} for entry in unknown]})


async def admin_outbox_resend(request: web.Request) -> web.Response:
    """Queue an unknown message again (from its unknown part on): 202, or 404 when there is
    no unknown message with that id (never one that is still queued or was sent)."""
    senders = _senders(request)
    if senders is None:
        return error(404, "sending_disabled", "this server sends nothing: no Twilio credentials (or sandbox)")
    message_id = request.match_info["id"]
    try:
        queued = await senders.outbox.resend(message_id, request.app[CLOCK]())
    except RedisError as err:
        return error(503, "redis_unavailable", f"Redis did not answer: {err}")
    if not queued:
        return error(404, "no_unknown_message", f"no message '{message_id}' of unknown outcome is kept")
    senders.wake()
    return web.json_response({"id": message_id, "status": "queued"}, status=202)


async def admin_distribution_resend(request: web.Request) -> web.Response:
    """Queue again every invitation of a distribution whose outcome is unknown."""
    senders = _senders(request)
    if senders is None:
        return error(404, "sending_disabled", "this server sends nothing: no Twilio credentials (or sandbox)")
    try:
        distribution = await existing_distribution(request)
    except UnknownDistribution as err:
        return error(404, "unknown_distribution", str(err))
    except (SQLAlchemyError, OSError) as err:
        return records_unavailable(err)
    try:
        ids = [entry["id"] for entry in await senders.outbox.unknown() if entry["distribution"] == distribution]
        queued = [id_ for id_ in ids if await senders.outbox.resend(id_, request.app[CLOCK]())]
    except RedisError as err:
        return error(503, "redis_unavailable", f"Redis did not answer: {err}")
    senders.wake()
    return web.json_response({"id": distribution, "resent": len(queued)}, status=202)


def add_outbox_routes(app: web.Application) -> None:
    app.router.add_get("/admin/outbox", admin_outbox)
    app.router.add_post("/admin/outbox/{id}/resend", admin_outbox_resend)
    app.router.add_post("/admin/distributions/{id}/resend", admin_distribution_resend)
