"""A survey's figures: responses by status, completion rate, each NPS question's score and
shares, and per question how many reached it, how many answered it and with what.

Computed by the database (GROUP BY and SUM over the responses table, one pass per kind of
figure), so the cost grows with the rows but nothing of them is held; the responses still only
in Redis's stream (the archiver's last second or so) are tallied here and added.

Each response is counted once although the archiver moves them meanwhile: the database counts
the rows archived before the stream was read (archived_at), the stream's entries are counted
here unless the database had them by then.

A question was reached when it was answered, given up after invalid replies (it has a time in
answered_at) or was the one waiting when the response closed (last_question). Responses archived
before answer times were recorded count as reached only what they answered or last asked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import and_, case, func, or_, select

from engine.flow import Flow
from engine.records.columns import CHOICE, NPS, Shape, nps_group
from engine.records.reading import Responses, is_preview
from engine.records.schema import responses as table

GROUPS = ("detractor", "passive", "promoter")
CHUNK = 500  # response ids per membership query


async def summarise(responses: Responses, survey: str,
                    flow_of: Callable[[str, str | None], Awaitable[Flow | None]],
                    previews: bool = False) -> dict:
    """The figures; the responses of previews only with `previews`."""
    shape, labels = Shape(), {}
    for version in (None, *sorted(await responses.versions(survey))):
        flow = await flow_of(survey, version)
        if flow is not None:
            shape.add_flow(flow)
            for ask in flow.survey.questions:
                for choice in ask.choices:
                    labels.setdefault(ask.id, {}).setdefault(str(choice.code), choice.label)
    questions = shape.questions
    tally = Tally(questions)
    read_at = datetime.now(UTC)
    streamed = [record async for _, record in responses.store.responses(survey)]
    async with responses.engine.connect() as connection:
        archived = set()
        for start in range(0, len(streamed), CHUNK):
            ids = [r["response_id"] for r in streamed[start:start + CHUNK]]
            archived.update(await connection.scalars(select(table.c.response_id).where(
                table.c.response_id.in_(ids), table.c.archived_at < read_at)))
        for record in streamed:
            if record["response_id"] not in archived and (previews or not is_preview(record)):
                tally.add(record)
        rows = and_(table.c.survey == survey, table.c.archived_at < read_at,
                    *(() if previews else (table.c.preview.is_(False),)))
        for status, count in await connection.execute(
                select(table.c.status, func.count()).where(rows).group_by(table.c.status)):
            tally.statuses[status] += count
        if questions:
            await _questions(connection, rows, questions, tally)
    return tally.figures(labels)


async def _questions(connection, rows, questions: dict, tally: Tally) -> None:
    last = table.c.extra["last_question"].as_string()
    sums = []
    for qid in questions:
        answered = table.c.answers[qid].as_string().is_not(None)
        left = table.c.extra[("answered_at", qid)].as_string().is_not(None)
        sums.append(func.sum(case((or_(answered, left, last == qid), 1), else_=0)))
        sums.append(func.sum(case((answered, 1), else_=0)))
    figures = (await connection.execute(select(*sums).where(rows))).one()
    for index, qid in enumerate(questions):
        tally.reached[qid] += figures[2 * index] or 0
        tally.answered[qid] += figures[2 * index + 1] or 0
    for qid, kind in questions.items():
        if kind == NPS:
            value = table.c.answers[qid].as_integer()
        elif kind == CHOICE:
            value = table.c.answers[(qid, "code")].as_string()
        else:
            continue
        query = select(value, func.count()).where(rows, value.is_not(None)).group_by(value)
        for answer, count in await connection.execute(query):
            tally.answers[qid][answer if kind == NPS else str(answer)] += count


class Tally:
    """The figures, added up from the database's counts and from records one by one."""

    def __init__(self, questions: dict[str, str | None]):
        self.questions = questions
        self.statuses: Counter[str] = Counter()
        self.reached: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()
        self.answers: dict[str, Counter] = {qid: Counter() for qid in questions}

    def add(self, record: dict) -> None:
        self.statuses[record["status"]] += 1
        answers, left = record.get("answers") or {}, record.get("answered_at") or {}
        for qid, kind in self.questions.items():
            if qid in answers or qid in left or record.get("last_question") == qid:
                self.reached[qid] += 1
            if qid not in answers:
                continue
            self.answered[qid] += 1
            value = answers[qid]
            if kind == NPS and isinstance(value, int):
                self.answers[qid][value] += 1
            elif kind == CHOICE:
                self.answers[qid][str(value.get("code") if isinstance(value, dict) else value)] += 1

    def figures(self, labels: dict[str, dict[str, str]]) -> dict:
        total = sum(self.statuses.values())
        questions, nps = [], {}
        for qid, kind in self.questions.items():
            entry = {"id": qid, "type": kind, "reached": self.reached[qid], "answered": self.answered[qid]}
            if kind == NPS:
                entry["answers"] = {str(score): self.answers[qid][score] for score in range(11)}
                nps[qid] = _nps(self.answers[qid])
            elif kind == CHOICE:
                entry["answers"] = [{"code": code, "label": labels.get(qid, {}).get(code), "count": count}
                                    for code, count in sorted(self.answers[qid].items(), key=_by_code)]
            questions.append(entry)
        return {
            "responses": total,
            "by_status": dict(sorted(self.statuses.items())),
            "completion_rate": _share(self.statuses["complete"], total),
            "nps": nps,
            "questions": questions,
        }


def _nps(scores: Counter) -> dict:
    groups = Counter()
    for score, count in scores.items():
        groups[nps_group(score)] += count
    answered = sum(groups.values())
    shares = {group + "s": _share(groups[group], answered) for group in GROUPS}
    score = None if not answered else round(100 * (groups["promoter"] - groups["detractor"]) / answered, 1)
    return {"answered": answered, "score": score, **shares}


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _by_code(item):
    code = item[0]
    return (0, int(code), code) if code.isdigit() else (1, 0, code)
