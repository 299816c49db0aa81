"""`canvass credits`: the credit balance in the records database (DATABASE_URL, or var/canvass.db).

    canvass credits add N [--reason TEXT] [--by NAME]    add N credits (negative: take back)
    canvass credits show                                  the balance: added, used, left
    canvass credits report [--by survey,distribution,country,direction,day]
                           [--since DAY] [--until DAY] [--format table|csv|json]

`add` and `show` print JSON on stdout, as the admin API answers; `report` prints a table (or
CSV, JSON). Errors go to stderr. Exit codes: 0 done, 1 the database is unreachable or behind,
2 the request itself is wrong (an amount or a day that cannot be read, an unknown grouping).
"""

from __future__ import annotations

import getpass
import json
import sys
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from engine.records import credits, migrate
from engine.records.database import connect, redacted
from engine.runtime.credits_api import FIGURES, day, report_csv, report_rows
from engine.sms.credits import json_number
from engine.tools.records_command import Refused, run_on_records

MAX_AMOUNT = Decimal(10) ** 12  # far above any real top-up; the column holds 14 digits before the point


def run_credits(args) -> int:
    return run_on_records("credits", args.action, lambda url: _run(args, url))


async def _run(args, url: str) -> int:
    request = ACTIONS[args.action][0](args)  # a wrong request is refused before connecting
    engine = connect(url)
    try:
        await migrate.check(engine, redacted(url))
        return await ACTIONS[args.action][1](engine, request)
    finally:
        await engine.dispose()


def _print_json(value) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def amount(text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or value == 0 or abs(value) >= MAX_AMOUNT:
        raise Refused(f"'{text}' is not an amount of credits: give a number other than 0, "
                      "e.g. 1000, 12.5, or -50 to take credits back")
    if value != value.quantize(Decimal("0.0001")):
        raise Refused(f"'{text}' has more than 4 decimals")
    return value


def _add_request(args) -> dict:
    reason = (args.reason or "").strip() or ("added" if amount(args.amount) > 0 else "taken back")
    if len(reason) > 200:
        raise Refused("--reason: at most 200 characters")
    by = args.by if args.by is not None else _login()
    return {"amount": amount(args.amount), "reason": reason, "by": (by or None) and by[:100]}


def _login() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return None


async def _add(engine, request: dict) -> int:
    left = await credits.add(engine, request["amount"], request["reason"], request["by"],
                             datetime.now(UTC))
    _print_json({"added": json_number(request["amount"]), "reason": request["reason"],
                 "by": request["by"], "balance": json_number(left)})
    return 0


async def _show(engine, request: dict) -> int:
    added, used = await credits.totals(engine)
    _print_json({"balance": json_number(added - used), "added": json_number(added), "used": json_number(used)})
    return 0


def _report_request(args) -> dict:
    try:
        by = credits.groupings(args.by)
        since, until = day(args.since, "--since"), day(args.until, "--until")
    except ValueError as err:  # BadGrouping is one
        raise Refused(str(err)) from None
    if since is not None and until is not None and since > until:
        raise Refused(f"--since {since} is after --until {until}")
    return {"by": by, "since": since, "until": until, "format": args.format}


async def _report(engine, request: dict) -> int:
    by = request["by"]
    rows = await credits.consumption(engine, by, request["since"], request["until"])
    if request["format"] == "csv":
        sys.stdout.write(report_csv(by, rows))
    elif request["format"] == "json":
        _print_json(report_rows(rows))
    else:
        print(table([*by, *FIGURES], [[row[name] for name in (*by, *FIGURES)]
                                      for row in report_rows(rows)]))
    return 0


def table(header: list[str], rows: list[list]) -> str:
    """Columns aligned for a terminal: figures to the right, words to the left."""
    cells = [header, *([str(value) for value in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [name in FIGURES for name in header]
    lines = ["  ".join(text.rjust(width) if right else text.ljust(width)
                       for text, width, right in zip(row, widths, numeric, strict=True)).rstrip()
             for row in cells]
    if not rows:
        lines.append("(no messages counted)")
    return "\n".join(lines)


ACTIONS = {"add": (_add_request, _add), "show": (lambda args: {}, _show),
           "report": (_report_request, _report)}
