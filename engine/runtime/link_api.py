"""The admin API of individual web links: `POST /admin/surveys/{id}/links` {"to": an optional
phone number, "fields": {...}} makes one (engine.records.links) and answers 201 with its URL,
PUBLIC_BASE_URL (else the request's own address) + /l/{token}."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from engine.records import links
from engine.runtime.appkeys import CLOCK, REGISTRY, RESPONSES, SETTINGS, error
from engine.runtime.status_api import not_active
from engine.runtime.untrusted import UntrustedInput, contact_fields, parse_json
from engine.session import PHONE_FIELD
from engine.sms.phones import InvalidNumber, to_e164

log = logging.getLogger("canvass.links")


def add_link_routes(app: web.Application) -> None:
    app.router.add_post("/admin/surveys/{survey}/links", admin_create_link)


async def admin_create_link(request: web.Request) -> web.Response:
    survey = request.match_info["survey"]
    if request.app[REGISTRY].get(survey) is None:
        return error(404, "unknown_survey", f"there is no survey '{survey}'")
    if (refused := await not_active(request, survey)) is not None:
        return refused
    try:
        raw = await request.read()
        body = parse_json(raw, request.charset) if raw.strip() else {}
        if not isinstance(body, dict):
            return error(400, "bad_json", "the body must be a JSON object")
        fields = contact_fields(body.get("fields", {}))
    except UntrustedInput as err:
        return error(err.status, err.reason, err.message)
    if PHONE_FIELD in fields:
        return error(400, "bad_fields", f"'{PHONE_FIELD}' is the respondent's own id, not a field to give")
    phone = body.get("to")
    if phone is not None:
        if not isinstance(phone, str):
            return error(400, "bad_number", "'to' must be a phone number in E.164 form, or left out")
        try:
            phone = to_e164(phone)
        except InvalidNumber as err:
            return error(400, "bad_number", str(err))
    now = datetime.fromtimestamp(request.app[CLOCK](), UTC)
    try:
        link = await links.create(request.app[RESPONSES].engine, survey, phone, fields, now)
    except SQLAlchemyError as err:
        log.warning("links: the records database is unreachable: %s", type(err).__name__)
        return error(503, "records_unavailable", "the records database is not reachable, try again")
    path = f"/l/{link.token}"
    url = request.app[SETTINGS].public_url(path) or f"{request.scheme}://{request.host}{path}"
    return web.json_response({"url": url, "token": link.token, "survey": survey}, status=201)
