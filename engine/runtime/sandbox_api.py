"""The admin API of the local sandbox: the messages the server sent on its own initiative
while it ran without Twilio (Settings.sandbox), as `canvass phone` and developers read them."""

from __future__ import annotations

from aiohttp import web

from engine.responses import iso
from engine.runtime.appkeys import SETTINGS, STORE, error
from engine.sms.phones import InvalidNumber, to_e164


def _recipient(query) -> str | None:
    """?to=NUMBER in E.164, or None. A '+' a client left unencoded arrives as a space."""
    raw = query.get("to")
    if raw is None:
        return None
    if raw.startswith(" ") and raw.strip()[:1].isdigit():
        raw = "+" + raw.strip()
    return to_e164(raw)


async def admin_sandbox_messages(request: web.Request) -> web.Response:
    """The sandbox's messages, oldest first (newest last): every number's, or ?to=NUMBER's."""
    if not request.app[SETTINGS].sandbox:
        return error(404, "no_sandbox", "the sandbox is off: the server sends through Twilio (the "
                                        "sandbox runs only in insecure local mode without Twilio credentials)")
    try:
        to = _recipient(request.query)
    except InvalidNumber as err:
        return error(400, "bad_number", f"to: {err}")
    messages = await request.app[STORE].sandbox_messages(to)
    return web.json_response({"messages": [{**message, "at": iso(message["at"])} for message in messages]})


def add_sandbox_routes(app: web.Application) -> None:
    app.router.add_get("/admin/sandbox/messages", admin_sandbox_messages)
