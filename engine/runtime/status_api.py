"""The admin API of a survey's status (engine.policy: active, paused, closed):
`GET /admin/surveys/{id}/status` shows it, `PUT /admin/surveys/{id}/status` {"status": ...}
sets it. Redis holds it (Store.set_survey_status), so every worker of every server sharing
the Redis refuses a paused or closed survey within a second (Service.flows), and it outlives restarts."""

from __future__ import annotations

import logging

from aiohttp import web

from engine.policy import SURVEY_STATUSES
from engine.runtime.appkeys import REGISTRY, SERVICE, STORE, error
from engine.runtime.untrusted import UntrustedInput, parse_json

log = logging.getLogger("canvass.surveys")


def add_status_routes(app: web.Application) -> None:
    app.router.add_get("/admin/surveys/{survey}/status", admin_status)
    app.router.add_put("/admin/surveys/{survey}/status", admin_set_status)


async def not_active(request: web.Request, survey: str) -> web.Response | None:
    """The 409 answer that refuses what would take new respondents into a survey that is not
    active; None when it is active."""
    service = request.app[SERVICE]
    service.statuses_changed()  # as Redis holds it now, not as this worker last read it
    status = (await service.flows()).status(survey)
    if status == "active":
        return None
    return error(409, f"survey_{status}", f"survey '{survey}' is {status}: it takes no new respondents "
                 f"(`canvass survey status {survey} active`, or PUT /admin/surveys/{survey}/status "
                 f"{{\"status\": \"active\"}}, to take them again)",
                 survey_status=status)


def _unknown(request: web.Request, survey: str) -> web.Response | None:
    if request.app[REGISTRY].get(survey) is None:
        return error(404, "unknown_survey", f"there is no survey '{survey}'")
    return None


async def admin_status(request: web.Request) -> web.Response:
    survey = request.match_info["survey"]
    if (unknown := _unknown(request, survey)) is not None:
        return unknown
    service = request.app[SERVICE]
    service.statuses_changed()  # as Redis holds it now, not as this worker last read it
    status = (await service.flows()).status(survey)
    return web.json_response({"survey": survey, "status": status})


async def admin_set_status(request: web.Request) -> web.Response:
    survey = request.match_info["survey"]
    try:
        body = parse_json(await request.read(), request.charset)
        if not isinstance(body, dict):
            raise UntrustedInput(400, "bad_json", "the body must be a JSON object")
        status = body.get("status")
        if status not in SURVEY_STATUSES or set(body) != {"status"}:
            raise UntrustedInput(400, "bad_status", "the body must be {\"status\": one of "
                                 f"{', '.join(SURVEY_STATUSES)}}}")
    except UntrustedInput as err:
        return error(err.status, err.reason, err.message)
    if (unknown := _unknown(request, survey)) is not None:
        return unknown
    await request.app[STORE].set_survey_status(survey, status)
    request.app[SERVICE].statuses_changed()  # this worker at once; the others within STATUSES_FRESH
    log.info("survey %s is now %s", survey, status)
    return web.json_response({"survey": survey, "status": status})
