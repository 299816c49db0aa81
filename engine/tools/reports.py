"""`canvass export` and `canvass report`: a survey's responses and figures, from the terminal.

Both read the records database (DATABASE_URL, or var/canvass.db) and Redis (REDIS_URL): the
responses not archived yet, those still in progress, and the stored flow versions, which give
the columns. `export` writes to --output through a temporary file renamed when the export is
whole, so a file of that name is never a cut-short export.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path

from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from engine.records import migrate
from engine.records.database import DatabaseUrlError, connect, database_url, redacted
from engine.records.reading import Responses
from engine.records.summary import summarise
from engine.redis.store import Store
from engine.runtime import exports
from engine.runtime.settings import DEFAULT_REDIS_URL, redact


class Unavailable(Exception):
    """The survey, the database or Redis cannot give what was asked; the message says why."""


@contextlib.asynccontextmanager
async def _opened(survey: str, during: str = ""):
    """(responses, flows) of `survey` from the records database and Redis, closed on the way
    out; a failure of either, on opening or `during` the work, is Unavailable."""
    url = database_url(os.environ.get("DATABASE_URL"))
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    engine, store = connect(url), await Store.open(redis_url)
    responses = Responses(engine, store)
    flows = exports.StoredFlows(store)
    try:
        try:
            await migrate.check(engine, redacted(url))
            if await flows(survey, None) is None and not await responses.has_responses(survey):
                raise Unavailable(f"there is no survey '{survey}' and no responses to it")
        except SQLAlchemyError as err:
            raise Unavailable(f"cannot reach the records database {redacted(url)}: {_first_line(err)}") from None
        except RedisError as err:
            raise Unavailable(f"cannot reach Redis at {redact(redis_url)} (it holds the responses not "
                              f"archived yet): {_first_line(err)}") from None
        try:
            yield responses, flows
        except SQLAlchemyError as err:
            raise Unavailable(f"the records database failed{during}: {_first_line(err)}") from None
        except RedisError as err:
            raise Unavailable(f"Redis failed{during}: {_first_line(err)}") from None
    finally:
        await store.aclose()
        await engine.dispose()


async def _export(args, options: exports.ExportOptions, out) -> None:
    async with _opened(args.survey, " during the export") as (responses, flows):
        async for piece in exports.export(responses, args.survey, flows, options):
            out.write(piece)


def run_export(args) -> int:
    try:
        options = exports.ExportOptions(
            form=args.format, since=exports.parse_since(args.since) if args.since else None,
            status=args.status, include_open=args.include_open, bom=args.bom,
            hash_key=exports.hash_key_from_env() if args.hash_phones else None,
            previews=getattr(args, "preview", False))
    except exports.ExportError as err:
        print(f"canvass export: {err}", file=sys.stderr)
        return 2
    try:
        if args.output is None:
            asyncio.run(_export(args, options, sys.stdout))
            return 0
        target = Path(args.output)
        partial = target.with_name(target.name + ".part")
        try:
            with partial.open("w", encoding="utf-8", newline="") as out:
                asyncio.run(_export(args, options, out))
            partial.replace(target)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
        return 0
    except (Unavailable, migrate.SchemaNotCurrent) as err:
        print(f"canvass export: {err}", file=sys.stderr)
        return 1
    except DatabaseUrlError as err:
        print(f"canvass export: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"canvass export: cannot write {args.output}: {err.strerror or err}", file=sys.stderr)
        return 1


async def _report(survey: str, previews: bool = False) -> dict:
    async with _opened(survey) as (responses, flows):
        return await summarise(responses, survey, flows, previews)


def run_report(args) -> int:
    try:
        summary = asyncio.run(_report(args.survey, getattr(args, "preview", False)))
    except (Unavailable, migrate.SchemaNotCurrent) as err:
        print(f"canvass report: {err}", file=sys.stderr)
        return 1
    except DatabaseUrlError as err:
        print(f"canvass report: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2) if args.json else render(args.survey, summary))
    return 0


def render(survey: str, summary: dict) -> str:
    """The summary as a few readable lines."""
    def percent(share) -> str:
        return "-" if share is None else f"{100 * share:.1f}%"

    lines = [f"{survey}: {summary['responses']} responses, {percent(summary['completion_rate'])} complete"]
    lines += [f"  {status:<14} {count}" for status, count in summary["by_status"].items()]
    for qid, nps in summary["nps"].items():
        score = "-" if nps["score"] is None else f"{nps['score']:+.1f}"
        lines.append(f"NPS {qid}: {score} ({nps['answered']} answered: promoters {percent(nps['promoters'])}, "
                     f"passives {percent(nps['passives'])}, detractors {percent(nps['detractors'])})")
    lines.append("question        reached  answered")
    for question in summary["questions"]:
        lines.append(f"  {question['id']:<14}{question['reached']:>7}{question['answered']:>10}")
        for answer in question.get("answers", []) if isinstance(question.get("answers"), list) else []:
            lines.append(f"    {answer['code']:>4} {answer['label'] or '':<20}{answer['count']:>6}")
    return "\n".join(lines)


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
