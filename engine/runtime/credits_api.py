"""The admin API of credits: the balance, and what messages used (the consumption report).
The work is engine.records.credits'; these handlers turn requests into its calls and its
refusals into status codes. Figures are JSON numbers (decimals where the table has them)."""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from engine.records import credits
from engine.runtime.appkeys import RATES, RESPONSES, error
from engine.runtime.contact_exports import csv_line
from engine.runtime.exports import cell
from engine.sms.credits import json_number

log = logging.getLogger("canvass.credits")

FIGURES = ("messages", "segments", "credits")


def report_rows(rows: list[dict]) -> list[dict]:
    """Consumption rows as JSON values: days as ISO dates, credits as numbers."""
    return [{key: (value.isoformat() if isinstance(value, date) else
                   json_number(value) if isinstance(value, Decimal) else value)
             for key, value in row.items()} for row in rows]


def report_csv(by: list[str], rows: list[dict]) -> str:
    """The report as CSV, its cells escaped against spreadsheet formulas as exports are."""
    return "".join([csv_line([*by, *FIGURES]),
                    *(csv_line([cell(row[name]) for name in (*by, *FIGURES)])
                      for row in report_rows(rows))])


def day(text: str | None, name: str) -> date | None:
    """A YYYY-MM-DD day as ?since= / --since give it; ValueError saying what it takes."""
    if text is None or not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{name} '{text}' is not a day: write YYYY-MM-DD, e.g. 2024-05-31") from None


def _unavailable(err: Exception) -> web.Response:
    log.warning("credits: the records database is unreachable: %s", type(err).__name__)
    return error(503, "records_unavailable", "the records database is not reachable, try again")


async def admin_credits(request: web.Request) -> web.Response:
    rates = request.app[RATES]
    try:
        balance = await credits.balance(request.app[RESPONSES].engine)
    except (SQLAlchemyError, OSError) as err:
        return _unavailable(err)
    return web.json_response({"balance": json_number(balance), "enabled": rates is not None,
                              "rates": rates.described if rates is not None else None})


async def admin_credits_usage(request: web.Request) -> web.Response:
    query = request.query
    form = query.get("format", "json")
    if form not in ("json", "csv"):
        return error(400, "bad_format", "format must be json or csv")
    try:
        by = credits.groupings(query.get("by"))
    except credits.BadGrouping as err:
        return error(400, "bad_grouping", str(err))
    try:
        since, until = day(query.get("since"), "since"), day(query.get("until"), "until")
    except ValueError as err:
        return error(400, "bad_day", str(err))
    if since is not None and until is not None and since > until:
        return error(400, "bad_day", f"since {since} is after until {until}")
    try:
        rows = await credits.consumption(request.app[RESPONSES].engine, by, since, until)
    except (SQLAlchemyError, OSError) as err:
        return _unavailable(err)
    if form == "csv":
        return web.Response(text=report_csv(by, rows), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": 'attachment; filename="credits.csv"'})
    return web.json_response({"by": by, "since": since and since.isoformat(),
                              "until": until and until.isoformat(), "rows": report_rows(rows)})


def add_credits_routes(app: web.Application) -> None:
    app.router.add_get("/admin/credits", admin_credits)
    app.router.add_get("/admin/credits/usage", admin_credits_usage)
