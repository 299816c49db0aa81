"""Contact lists: every contact file under tests/contacts/ imported through the CLI and through
the admin API, on SQLite and PostgreSQL, against its golden file (<file>.golden.json: the report
or the error, and the contacts stored). options.json gives a file's --phone-column and
--default-country. Regenerate the golden files with CANVASS_REGEN=1 and read the diff.
Then re-imports, the list routes and commands, exports and deletions."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
import os
from pathlib import Path

import pytest
from conftest import admin_headers

from engine.records import contacts
from engine.records.contact_files import ContactFile
from engine.records.database import connect
from engine.records.schema import opt_outs
from engine.tools import cli

CASES = Path(__file__).resolve().parent / "contacts"
FILES = sorted(path.name for path in CASES.glob("*.csv"))
OPTIONS = json.loads((CASES / "options.json").read_text())
REGEN = os.environ.get("CANVASS_REGEN") == "1"
CSV = {"Content-Type": "text/csv"}


@pytest.fixture
async def lists_client(make_client, settings, records_url):
    client = await make_client(dataclasses.replace(settings, database_url=records_url))
    client.records_url = records_url
    return client


async def stored(url: str, name: str) -> list[dict]:
    engine = connect(url)
    try:
        return [{key: contact[key] for key in ("phone", "email", "fields", "line_warning")}
                async for contact in contacts.contacts_of(engine, name)]
    except contacts.UnknownList:
        return []
    finally:
        await engine.dispose()


async def api_import(client, name: str, body: bytes, **query) -> tuple[int, dict]:
    answer = await client.post(f"/admin/lists/{name}/import", data=body, params=query,
                               headers={**admin_headers(), **CSV})
    return answer.status, await answer.json()


def cli_import(monkeypatch, capsys, url: str, name: str, path: Path, **options) -> tuple[int, str, str]:
    monkeypatch.setenv("DATABASE_URL", url)
    argv = ["contacts", "import", str(path), "--list", name]
    for option, value in options.items():
        argv += [f"--{option.replace('_', '-')}", value]
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def check_golden(case: str, outcome: dict) -> None:
    golden = CASES / f"{case}.golden.json"
    if REGEN:
        golden.write_text(json.dumps(outcome, indent=2, ensure_ascii=False) + "\n")
    assert golden.exists(), f"{golden.name} is missing: run with CANVASS_REGEN=1 and read it"
    assert outcome == json.loads(golden.read_text())


# ---------------------------------------------------------------- the files, both ways


@pytest.mark.parametrize("case", FILES)
async def test_a_contact_file_through_the_api(lists_client, case):
    status, answer = await api_import(lists_client, "cases", (CASES / case).read_bytes(),
                                      **OPTIONS.get(case, {}))
    if status == 200:
        outcome = {"report": answer}
    else:
        assert status == 422, answer
        outcome = {"error": answer}
    outcome["contacts"] = await stored(lists_client.records_url, "cases")
    check_golden(case, outcome)


@pytest.mark.parametrize("case", FILES)
async def test_a_contact_file_through_the_cli(records_url, monkeypatch, capsys, case):
    golden = json.loads((CASES / f"{case}.golden.json").read_text())
    code, out, err = await asyncio.to_thread(
        cli_import, monkeypatch, capsys, records_url, "cases", CASES / case, **OPTIONS.get(case, {}))
    if "report" in golden:
        assert code == 0, err
        assert json.loads(out) == golden["report"]
    else:
        assert (code, out) == (2, "")
        assert golden["error"]["message"] in err
        assert "Traceback" not in err
    assert await stored(records_url, "cases") == golden["contacts"]


def test_every_report_accounts_for_every_row():
    """imported + updated + unchanged + rejected = the data rows that are not empty."""
    for case in FILES:
        golden = json.loads((CASES / f"{case}.golden.json").read_text())
        if "report" not in golden:
            continue
        report = golden["report"]
        text = (CASES / case).read_bytes()
        if text.startswith((b"\xff\xfe", b"\xfe\xff")):
            decoded = text.decode("utf-16")
        elif b"\x00" in text:  # UTF-16 without its BOM: the NULs are the high bytes
            decoded = text.decode("utf-16-le" if text[1] == 0 else "utf-16-be")
        else:
            try:
                decoded = text.decode("utf-8-sig")
            except UnicodeDecodeError:
                decoded = text.decode("cp1252")
        if decoded.startswith("sep="):
            decoded = decoded.split("\n", 1)[1]
        lines = decoded.splitlines(keepends=True)
        while lines and not lines[0].strip(" \t\r\n,;\""):  # blank rows before the header are no rows
            lines.pop(0)
        decoded = "".join(lines)
        header = ""
        for line in decoded.splitlines(keepends=True):  # the header's lines (quotes may hold breaks)
            header += line
            if header.count('"') % 2 == 0:
                break
        outside_quotes = "".join(header.split('"')[::2])
        separator = max((",", ";", "\t"), key=outside_quotes.count)
        rows = list(csv.reader(io.StringIO(decoded, newline=""), delimiter=separator))[1:]
        data = sum(1 for row in rows if any(cell.strip() for cell in row))
        counted = report["imported"] + report["updated"] + report["unchanged"] + len(report["rejected"])
        assert counted == data, case


# ---------------------------------------------------------------- re-importing


async def test_reimporting_updates_by_number_and_counts_what_changed(lists_client):
    first = b"Phone,Email,FirstName,Plan\n12025550101,a@example.com,Ana,gold\n12025550102,,Bo,silver\n"
    assert (await api_import(lists_client, "members", first))[1] == {
        "imported": 2, "updated": 0, "unchanged": 0, "rejected": [], "warnings": []}
    again = await api_import(lists_client, "members", first)
    assert again[1]["unchanged"] == 2 and again[1]["imported"] == again[1]["updated"] == 0
    # a new email for Ana, Bo's fields replaced (Plan gone, City new), a new number
    changed = b"Mobile,Email,FirstName,City\n+1 202 555 0101,ana@example.org,Ana,Lisbon\n" \
              b"1-202-555-0102,,Bo,Porto\n12025550103,,Cy,Faro\n"
    status, report = await api_import(lists_client, "members", changed)
    assert (status, report["imported"], report["updated"], report["unchanged"]) == (200, 1, 2, 0)
    assert await stored(lists_client.records_url, "members") == [
        {"phone": "+12025550101", "email": "ana@example.org", "fields": {"FirstName": "Ana", "City": "Lisbon"},
         "line_warning": None},
        {"phone": "+12025550102", "email": None, "fields": {"FirstName": "Bo", "City": "Porto"},
         "line_warning": None},
        {"phone": "+12025550103", "email": None, "fields": {"FirstName": "Cy", "City": "Faro"},
         "line_warning": None}]
    shown = await (await lists_client.get("/admin/lists/members", headers=admin_headers())).json()
    assert shown["fields"] == ["FirstName", "Plan", "City"]  # every field an import carried


async def test_a_number_twice_in_one_file_is_stored_once_with_the_later_row_and_a_warning(lists_client):
    rows = [b"Phone,Name"] + [b"1202555%04d,n%d" % (1000 + i, i) for i in range(1500)]
    rows.append(b"+1 202 555 1000,last")  # the first number again, in another batch
    status, report = await api_import(lists_client, "big", b"\n".join(rows) + b"\n")
    assert (status, report["imported"], report["updated"], report["rejected"]) == (200, 1500, 1, [])
    assert [w["row"] for w in report["warnings"]] == [1502]
    assert "earlier row" in report["warnings"][0]["reason"]
    shown = await (await lists_client.get("/admin/lists/big", headers=admin_headers())).json()
    assert shown["contacts"] == 1500


async def test_a_sqlite_import_commits_with_normal_sync_and_gives_its_connection_back_at_full(
        tmp_path, records_template, monkeypatch):
    target = tmp_path / "canvass.db"
    target.write_bytes(records_template.read_bytes())
    engine = connect(f"sqlite:///{target}")
    seen = []
    original = contacts._write_batch

    async def write_batch(connection, *args):
        seen.append((await connection.exec_driver_sql("PRAGMA synchronous")).scalar())
        await original(connection, *args)

    monkeypatch.setattr(contacts, "_write_batch", write_batch)
    try:
        body = io.BytesIO(b"Phone,Name\n12025550101,Ana\n12025550102,Bo\n")
        report = await contacts.import_file(engine, "sync", ContactFile(body))
        async with engine.connect() as connection:  # the pool's one connection, used again
            after = (await connection.exec_driver_sql("PRAGMA synchronous")).scalar()
    finally:
        await engine.dispose()
    assert report.imported == 2
    assert (seen, after) == ([1], 2)  # NORMAL while importing, FULL again for the archiver


async def test_an_export_imports_back_unchanged(lists_client):
    await api_import(lists_client, "trip", (CASES / "bom_excel_quoting.csv").read_bytes())
    exported = await (await lists_client.get("/admin/lists/trip/contacts?format=csv",
                                             headers=admin_headers())).read()
    status, report = await api_import(lists_client, "trip", exported)
    assert (status, report["unchanged"], report["imported"], report["updated"]) == (200, 3, 0, 0)


# ---------------------------------------------------------------- the list routes


async def test_lists_show_counts_fields_and_opt_outs(lists_client):
    await api_import(lists_client, "a", (CASES / "uk_formats.csv").read_bytes())
    await api_import(lists_client, "b", (CASES / "us_formats.csv").read_bytes())
    engine = connect(lists_client.records_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(opt_outs.insert(), [
                {"channel": "sms", "phone": "+447911123456", "opted_out": True, "how": "keyword",
                 "at": _now(), "event_id": "e1"},
                {"channel": "whatsapp", "phone": "+447911123457", "opted_out": True, "how": "keyword",
                 "at": _now(), "event_id": "e2"},
                {"channel": "sms", "phone": "+447911123458", "opted_out": False, "how": "keyword",
                 "at": _now(), "event_id": "e3"}])
    finally:
        await engine.dispose()
    listed = await (await lists_client.get("/admin/lists", headers=admin_headers())).json()
    assert [(entry["name"], entry["contacts"]) for entry in listed["lists"]] == [("a", 6), ("b", 6)]
    shown = await (await lists_client.get("/admin/lists/a", headers=admin_headers())).json()
    assert shown["contacts"] == 6 and shown["with_email"] == 0
    assert shown["opted_out"] == {"sms": 1, "whatsapp": 1}
    assert shown["line_warnings"] == {"fixed_line": 1}
    assert shown["fields"] == ["Name", "Region"]


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def test_exports_stream_csv_safe_from_formulas_and_jsonl(lists_client):
    body = b'Phone,Name,Note\n12025550301,"=HYPERLINK(""http://evil"")",+1 it\n12025550302,Bo,-3\n'
    await api_import(lists_client, "x", body)
    answer = await lists_client.get("/admin/lists/x/contacts?format=csv", headers=admin_headers())
    assert answer.status == 200 and answer.content_type == "text/csv"
    assert list(csv.reader(io.StringIO((await answer.read()).decode(), newline=""))) == [
        ["phone", "email", "Name", "Note"],
        ["+12025550301", "", "'=HYPERLINK(\"http://evil\")", "'+1 it"],
        ["+12025550302", "", "Bo", "-3"]]
    answer = await lists_client.get("/admin/lists/x/contacts", headers=admin_headers())
    lines = [json.loads(line) for line in (await answer.text()).splitlines()]
    assert [line["phone"] for line in lines] == ["+12025550301", "+12025550302"]
    assert lines[0]["fields"] == {"Name": '=HYPERLINK("http://evil")', "Note": "+1 it"}


async def test_deleting_a_contact(lists_client):
    await api_import(lists_client, "d", (CASES / "us_formats.csv").read_bytes())
    answer = await lists_client.delete("/admin/lists/d/contacts/+12025550123", headers=admin_headers())
    assert (answer.status, await answer.json()) == (200, {"deleted": "+12025550123", "list": "d"})
    answer = await lists_client.delete("/admin/lists/d/contacts/12025550123", headers=admin_headers())
    assert (answer.status, (await answer.json())["error"]) == (404, "unknown_contact")
    answer = await lists_client.delete("/admin/lists/d/contacts/abc", headers=admin_headers())
    assert (answer.status, (await answer.json())["error"]) == (400, "bad_number")
    assert len(await stored(lists_client.records_url, "d")) == 5


@pytest.mark.parametrize("method, path, kwargs, status, error", [
    ("get", "/admin/lists/nope", {}, 404, "unknown_list"),
    ("get", "/admin/lists/nope/contacts", {}, 404, "unknown_list"),
    ("get", "/admin/lists/nope/contacts?format=xml", {}, 400, "bad_format"),
    ("delete", "/admin/lists/nope/contacts/+12025550123", {}, 404, "unknown_list"),
    ("post", "/admin/lists/x/import", {"data": b"Phone\n12025550123\n",
                                       "headers": {"Content-Type": "application/json"}}, 415, "bad_content_type"),
    ("post", "/admin/lists/x/import?default_country=XX", {"data": b"Phone\n", "headers": CSV}, 400, "bad_country"),
    ("post", "/admin/lists/" + "x" * 101 + "/import", {"data": b"Phone\n", "headers": CSV}, 400,
     "bad_list_name"),
    ("post", "/admin/lists/x/import?phone_column=Cell", {"data": b"Phone,Name\n", "headers": CSV}, 422,
     "no_phone_column"),
])
async def test_bad_requests_get_clear_answers(lists_client, method, path, kwargs, status, error):
    kwargs = dict(kwargs)
    headers = {**admin_headers(), **kwargs.pop("headers", {})}
    answer = await getattr(lists_client, method)(path, headers=headers, **kwargs)
    assert answer.status == status
    assert (await answer.json())["error"] == error


async def test_the_list_routes_want_the_admin_token(lists_client):
    for method, path in (("get", "/admin/lists"), ("get", "/admin/lists/a"),
                         ("post", "/admin/lists/a/import"), ("get", "/admin/lists/a/contacts"),
                         ("delete", "/admin/lists/a/contacts/+12025550123")):
        answer = await getattr(lists_client, method)(path, data=b"Phone\n", headers=CSV)
        assert answer.status == 401, path


async def test_a_large_body_is_streamed_past_the_small_request_limit(lists_client):
    rows = b"".join(b"1202555%04d,%s\n" % (i, b"x" * 80) for i in range(2000))
    status, report = await api_import(lists_client, "wide", b"Phone,Padding\n" + rows)
    assert len(rows) > 64 * 1024 and (status, report["imported"]) == (200, 2000)


async def test_a_list_name_is_written_as_people_name_things(lists_client):
    status, report = await api_import(lists_client, "Spring%20customers%20%C3%A9t%C3%A9",
                                      b"Phone\n12025550111\n")
    assert (status, report["imported"]) == (200, 1)
    listed = await (await lists_client.get("/admin/lists", headers=admin_headers())).json()
    assert [entry["name"] for entry in listed["lists"]] == ["Spring customers été"]
    answer = await lists_client.get("/admin/lists/Spring%20customers%20%C3%A9t%C3%A9", headers=admin_headers())
    assert (await answer.json())["contacts"] == 1


async def test_a_body_over_the_limit_is_refused_and_imports_nothing(lists_client, monkeypatch):
    from engine.runtime import contact_api

    monkeypatch.setattr(contact_api, "MAX_CONTACT_FILE", 100)
    status, answer = await api_import(lists_client, "big", b"Phone\n" + b"12025550112\n" * 20)
    assert (status, answer["error"]) == (413, "too_large")
    assert await stored(lists_client.records_url, "big") == []


# ---------------------------------------------------------------- the commands


def test_the_commands_list_show_export_and_delete(records_url, monkeypatch, capsys):
    code, _, _ = cli_import(monkeypatch, capsys, records_url, "uk", CASES / "uk_formats.csv")
    assert code == 0
    assert cli.main(["contacts", "lists"]) == 0
    assert [entry["name"] for entry in json.loads(capsys.readouterr().out)] == ["uk"]
    assert cli.main(["contacts", "show", "uk"]) == 0
    assert json.loads(capsys.readouterr().out)["contacts"] == 6
    assert cli.main(["contacts", "export", "uk"]) == 0
    exported = list(csv.reader(io.StringIO(capsys.readouterr().out, newline="")))
    assert exported[0] == ["phone", "email", "Name", "Region"] and len(exported) == 7
    assert cli.main(["contacts", "export", "uk", "--format", "jsonl"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 6
    assert cli.main(["contacts", "delete", "uk", "447911123456"]) == 0
    assert json.loads(capsys.readouterr().out) == {"deleted": "+447911123456", "list": "uk"}
    assert cli.main(["contacts", "delete", "uk", "447911123456"]) == 2
    assert "is not on the list" in capsys.readouterr().err
    assert cli.main(["contacts", "show", "nope"]) == 2
    assert "there is no contact list 'nope'" in capsys.readouterr().err
    assert cli.main(["contacts", "import", str(CASES / "no-such.csv"), "--list", "uk"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_the_commands_say_when_the_schema_is_behind(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    assert cli.main(["contacts", "lists"]) == 1
    assert "run `canvass db upgrade`" in capsys.readouterr().err
