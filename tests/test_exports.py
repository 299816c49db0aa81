"""Exports and summaries of a survey's responses, read the way an analyst's script reads them
(the csv module, no special cases), against SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import os
import re
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest
from conftest import admin_headers
from fake_twilio import Phone

from engine.records.columns import PhoneHash
from server import ARCHIVER

FLOW = """\
survey: analyst
access_code: "@ANALYST"
fields: [FirstName]
flow:
  - ask: score
    type: nps
    prompt: How likely are you to recommend us? Reply 0-10.
  - ask: reason
    type: text
    prompt: Why so low?
    show_if: score <= 6
  - ask: visit
    type: choice
    prompt: What did you shop for?
    choices: [Groceries, Clothing]
  - set: segment
    value: '"promoter" if score >= 9 else "other"'
  - end: done
    message: Thanks!
"""
HEADER = [
    "response_id", "survey", "version", "channel", "phone", "status", "language", "started_at", "ended_at", "end",
    "last_question", "messages_in", "messages_out", "segments_in", "segments_out", "not_shown",
    "score", "score_group", "score_at", "reason", "reason_at", "visit", "visit_label", "visit_at",
    "field:segment", "field:FirstName", "field:Q_RecipientPhoneNumber", "other_fields",
]
MILLISECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
CANVASS = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "canvass"
KEY = "a-key-for-sharing-exports"
A, B, C, D, E = (f"+1555140{n:04d}" for n in range(1, 6))


@pytest.fixture
async def analyst(make_client, settings, flows_dir, records_url):
    (flows_dir / "analyst.yaml").write_text(FLOW)
    client = await make_client(dataclasses.replace(settings, database_url=records_url))
    while client.app[ARCHIVER].rounds == 0:
        await asyncio.sleep(0.01)
    return client


async def answer(client, number: str, *texts: str) -> None:
    phone = Phone(client, number)
    for text in ("@ANALYST", *texts):
        await phone.send(text)


async def respond(client) -> None:
    """A: a detractor who explains; B: a promoter; C: a passive who opts out at `visit`; D: still
    answering; all archived but D."""
    await answer(client, A, "3", "=HYPERLINK(\"http://x\")", "2")
    await answer(client, B, "10", "1")
    await answer(client, C, "8", "STOP")
    await answer(client, D, "9")
    await client.app[ARCHIVER].archive_once()


async def fetch(client, query: str = "format=csv", status: int = 200) -> str:
    response = await client.get(f"/admin/responses/analyst?{query}", headers=admin_headers())
    assert response.status == status, await response.text()
    return (await response.read()).decode("utf-8")


def read_csv(text: str) -> list[dict]:
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == HEADER
    rows = list(reader)
    for row in rows:  # every row has every column, and no more
        assert None not in row and all(value is not None for value in row.values())
    return rows


async def test_the_csv_has_the_same_columns_for_every_response_and_reads_without_special_cases(
        analyst, redis_sync):
    await respond(analyst)
    rows = {row["phone"]: row for row in read_csv(await fetch(analyst))}
    assert sorted(rows) == [A, B, C]
    a, b, c = rows[A], rows[B], rows[C]
    assert (a["status"], a["end"], a["last_question"]) == ("complete", "done", "")
    assert (a["score"], a["score_group"], a["reason"]) == ("3", "detractor", "'=HYPERLINK(\"http://x\")")
    assert (a["visit"], a["visit_label"], a["field:segment"]) == ("2", "Clothing", "other")
    assert (b["score_group"], b["reason"], b["reason_at"], b["visit_label"]) == ("promoter", "", "", "Groceries")
    assert json.loads(b["not_shown"]) == ["reason"] and json.loads(a["not_shown"]) == []
    assert (c["status"], c["end"], c["last_question"], c["score_group"]) == ("opted_out", "", "visit", "passive")
    assert (c["visit"], c["visit_at"]) == ("", "")
    for row in rows.values():
        assert MILLISECONDS.fullmatch(row["started_at"]) and MILLISECONDS.fullmatch(row["ended_at"])
        assert MILLISECONDS.fullmatch(row["score_at"])
    assert MILLISECONDS.fullmatch(a["visit_at"]) and a["score_at"] <= a["reason_at"] <= a["visit_at"]

    redis_sync.flushall()  # archived: Redis losing everything loses none of it
    assert sorted(row["phone"] for row in read_csv(await fetch(analyst))) == [A, B, C]


async def test_responses_in_progress_are_included_on_request_marked_open(analyst):
    await respond(analyst)
    rows = {row["phone"]: row for row in read_csv(await fetch(analyst, "format=csv&include_open=1"))}
    assert sorted(rows) == [A, B, C, D]
    assert (rows[D]["status"], rows[D]["last_question"], rows[D]["score_group"]) == ("open", "visit", "promoter")
    assert rows[D]["ended_at"] == "" and rows[D]["started_at"]  # it has not ended
    lines = (await fetch(analyst, "format=jsonl&include_open=true")).splitlines()
    records = {r["phone"]: r for r in map(json.loads, lines)}
    assert records[D]["status"] == "open" and records[D]["answers"]["score"] == {"score": 9, "group": "promoter"}
    assert records[A]["answers"]["visit"] == {"code": "2", "label": "Clothing"}
    assert records[B]["not_shown"] == ["reason"]
    assert MILLISECONDS.fullmatch(records[A]["answered_at"]["reason"])


async def test_filters_by_status_and_time(analyst):
    await respond(analyst)
    assert [r["phone"] for r in read_csv(await fetch(analyst, "format=csv&status=opted_out"))] == [C]
    assert read_csv(await fetch(analyst, "format=csv&since=2999-01-01")) == []
    assert len(read_csv(await fetch(analyst, "format=csv&since=2000-01-01T00:00:00Z"))) == 3


async def test_phone_numbers_are_replaced_by_a_keyed_hash(analyst, monkeypatch):
    await respond(analyst)
    monkeypatch.setenv("CANVASS_EXPORT_KEY", KEY)
    for form in ("csv", "jsonl"):
        text = await fetch(analyst, f"format={form}&hash_phones=1&include_open=1")
        assert not any(number.lstrip("+") in text for number in (A, B, C, D))
    rows = read_csv(await fetch(analyst, "format=csv&hash_phones=1"))
    hashed = PhoneHash(KEY)
    assert sorted(r["phone"] for r in rows) == sorted(hashed(n) for n in (A, B, C))
    assert all(r["field:Q_RecipientPhoneNumber"] == r["phone"] for r in rows)


async def test_a_byte_order_mark_for_excel(analyst):
    await respond(analyst)
    response = await analyst.get("/admin/responses/analyst?format=csv&bom=1", headers=admin_headers())
    body = await response.read()
    assert body.startswith(b"\xef\xbb\xbf")
    assert len(read_csv(body.decode("utf-8-sig"))) == 3


@pytest.mark.parametrize("query, says", [
    ("format=xml", "format must be csv or jsonl"),
    ("status=done", "status must be one of"),
    ("since=yesterday", "not an ISO 8601 date"),
    ("bom=maybe", "bom must be 1 or 0"),
    ("hash_phones=1", "CANVASS_EXPORT_KEY"),
    ("colour=red", "unknown option colour"),
])
async def test_bad_export_options_get_a_clear_400(analyst, query, says, monkeypatch):
    monkeypatch.delenv("CANVASS_EXPORT_KEY", raising=False)
    response = await analyst.get(f"/admin/responses/analyst?{query}", headers=admin_headers())
    assert response.status == 400
    assert says in (await response.json())["message"]


async def test_responses_of_a_removed_survey_still_export(analyst, flows_dir, redis_sync):
    await respond(analyst)
    (flows_dir / "analyst.yaml").unlink()
    response = await analyst.post("/admin/reload", headers=admin_headers())
    assert response.status == 200, await response.text()
    redis_sync.flushall()  # its flow versions are gone too: the records say their questions
    text = await fetch(analyst)
    header = next(csv.reader(io.StringIO(text)))
    assert {"score", "reason", "visit", "visit_label", "field:segment"} <= set(header)
    assert sorted(row["phone"] for row in csv.DictReader(io.StringIO(text))) == [A, B, C]


async def test_the_admin_session_view_gives_times_in_iso_8601_with_milliseconds(analyst):
    await respond(analyst)
    response = await analyst.get(f"/admin/sessions/{D}", headers=admin_headers())
    session = (await response.json())["channels"]["sms"]["respondent"]["session"]
    for name in ("started_at", "updated_at", "expires_at"):
        assert MILLISECONDS.fullmatch(session[name]), session[name]
    assert MILLISECONDS.fullmatch(session["answered_at"]["score"])


async def test_the_summary_counts_by_status_nps_and_drop_off(analyst):
    await respond(analyst)
    await answer(analyst, E, "9", "1")  # closed after the archiver's round: only in Redis's stream
    response = await analyst.get("/admin/surveys/analyst/summary", headers=admin_headers())
    assert response.status == 200
    summary = await response.json()
    # A 3 (detractor), B 10, E 9 (promoters), C 8 (passive); D is still open
    assert summary["responses"] == 4
    assert summary["by_status"] == {"complete": 3, "opted_out": 1}
    assert summary["completion_rate"] == 0.75
    assert summary["nps"] == {"score": {"answered": 4, "score": 25.0, "detractors": 0.25,
                                        "passives": 0.25, "promoters": 0.5}}
    score, reason, visit = summary["questions"]
    assert (score["reached"], score["answered"]) == (4, 4)
    assert score["answers"] == {**{str(n): 0 for n in range(11)}, "3": 1, "8": 1, "9": 1, "10": 1}
    assert (reason["reached"], reason["answered"]) == (1, 1)
    assert (visit["reached"], visit["answered"]) == (4, 3)  # C reached it and opted out
    assert visit["answers"] == [{"code": "1", "label": "Groceries", "count": 2},
                                {"code": "2", "label": "Clothing", "count": 1}]
    await analyst.app[ARCHIVER].archive_once()  # the same figures once everything is archived
    again = await (await analyst.get("/admin/surveys/analyst/summary", headers=admin_headers())).json()
    assert again == summary


async def test_a_summary_of_an_unknown_survey_is_a_404(analyst):
    response = await analyst.get("/admin/surveys/nothing/summary", headers=admin_headers())
    assert response.status == 404


async def canvass(*argv: str, env: dict) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(CANVASS), *argv, env={**os.environ, **env}, stdout=PIPE, stderr=PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode, out.decode(), err.decode()


async def test_canvass_export_and_report_give_what_the_admin_api_gives(analyst, redis_url, tmp_path):
    await respond(analyst)
    env = {"DATABASE_URL": analyst.app[ARCHIVER].engine.url.render_as_string(hide_password=False)
           .replace("+aiosqlite", "").replace("+asyncpg", ""), "REDIS_URL": redis_url}
    target = tmp_path / "analyst.csv"
    code, _, err = await canvass("export", "analyst", "--output", str(target), "--include-open", env=env)
    assert code == 0, err
    assert target.read_bytes().decode() == await fetch(analyst, "format=csv&include_open=1")
    assert not (tmp_path / "analyst.csv.part").exists()
    code, out, err = await canvass("export", "analyst", "--format", "jsonl", "--status", "complete", env=env)
    assert code == 0, err
    assert out == await fetch(analyst, "format=jsonl&status=complete")

    code, out, err = await canvass("report", "analyst", "--json", env=env)
    assert code == 0, err
    summary = await (await analyst.get("/admin/surveys/analyst/summary", headers=admin_headers())).json()
    assert json.loads(out) == summary
    code, out, _ = await canvass("report", "analyst", env=env)
    assert "3 responses" in out and "NPS score: +0.0 (3 answered" in out

    code, _, err = await canvass("export", "nothing", env=env)
    assert code == 1 and "there is no survey 'nothing'" in err
    code, _, err = await canvass("export", "analyst", "--since", "soon", env=env)
    assert code == 2 and "not an ISO 8601 date" in err and "Traceback" not in err
