"""Credits: the rates table (loading, every refusal with its line, countries, prices), the
ledger and the usage in the records database (SQLite and PostgreSQL), the counting of every
message of a conversation over the webhook, the commands and the admin API."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import START_TIME, admin_headers
from fake_twilio import Phone

from engine.records import credits, migrate
from engine.records.database import connect
from engine.runtime.settings import ConfigError, Settings
from engine.runtime.usage import Usage
from engine.sms.credits import (
    SHIPPED,
    CreditsTableError,
    Rates,
    charged_segments,
    estimate_credits,
    region,
)
from engine.tools import cli
from server import SERVICE

SCORE_PROMPT = "Hi ! How likely are you to recommend us? Reply 0-10. Text STOP to opt out."
START_DAY = datetime.fromtimestamp(START_TIME, UTC).date()


def table(tmp_path: Path, text: str) -> str:
    path = tmp_path / "credits.csv"
    path.write_text(text)
    return str(path)


def usage_row(survey="s", distribution="", country="US", direction="out", messages=1,
              segments=1, credits_used="1", day=date(2024, 5, 1)) -> credits.UsageRow:
    return credits.UsageRow(day, survey, distribution, country, direction, messages, segments,
                            Decimal(credits_used))


# ---------------------------------------------------------------- the rates table


def test_the_shipped_table_loads_and_prices_by_country_direction_and_segments():
    rates = Rates.load(None)
    assert rates.source is None and rates.described == "shipped"
    assert rates.credits("US", 3, "out") == 3 and rates.credits("US", 3, "in") == 3
    assert rates.credits("GB", 2, "out") == 4 and rates.credits("GB", 2, "in") == 2
    assert rates.credits("IN", 3, "in") == Decimal("1.5")
    # a country without a row of its own, and no country at all, take the * row
    assert rates.credits("JP", 2, "out") == 10 and rates.credits("ZZ", 2, "in") == 4
    with pytest.raises(ValueError, match="direction"):
        rates.credits("US", 1, "sideways")


def test_the_shipped_table_is_installed_as_package_data():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"engine.sms" = ["credits.csv"]' in text
    assert SHIPPED.name == "credits.csv" and SHIPPED.exists()


def test_an_operator_table_with_decimals_comments_and_columns_in_any_order(tmp_path):
    path = table(tmp_path, "# my prices\n\ninbound, Country ,outbound\n0.25,fr,1.5\n# default\n1,*,2.125\n")
    rates = Rates.load(path)
    assert rates.described == path
    assert rates.credits("FR", 3, "out") == Decimal("4.5")
    assert rates.credits("FR", 3, "in") == Decimal("0.75")
    assert rates.credits("DE", 2, "out") == Decimal("4.25")


def test_none_turns_credits_off():
    assert Rates.load("none") is None and Rates.load(" NONE ") is None
    assert estimate_credits(None, "US", 3) is None
    assert estimate_credits(Rates.load(None), "GB", 3) == 6


HEADER = "country,outbound,inbound\n"


@pytest.mark.parametrize("text, line, said", [
    (HEADER + "US,1,1\nXX,1,1\n*,5,2\n", 3, "'XX' is not a country code"),
    (HEADER + "UK,2,1\n*,5,2\n", 2, "did you mean GB?"),
    (HEADER + "US,-1,1\n*,5,2\n", 2, "outbound -1 is negative"),
    (HEADER + "US,1,one\n*,5,2\n", 2, "inbound 'one' is not a number"),
    (HEADER + "US,1,NaN\n*,5,2\n", 2, "inbound 'NaN' is not a number"),
    (HEADER + "US,1,\n*,5,2\n", 2, "inbound '' is not a number"),
    (HEADER + "US,1,1\n*,5,2\nus,2,2\n", 4, "US appears twice (first on line 2)"),
    (HEADER + "US,1\n*,5,2\n", 2, "2 value(s) where the header names 3"),
    ("# prices\ncountry,outbound\nUS,1\n", 2, "missing column(s) inbound"),
    ("country,outbound,inbound,note\n", 1, "unknown column(s) note"),
    ("country,outbound,outbound,inbound\n", 1, "a column named twice"),
    (HEADER + "US,1,1\n", None, "no `*` row"),
    ("# only comments\n\n", None, "the table is empty"),
])
def test_a_bad_table_is_refused_with_its_line(tmp_path, text, line, said):
    path = table(tmp_path, text)
    with pytest.raises(CreditsTableError) as caught:
        Rates.load(path)
    assert caught.value.line == line
    assert said in caught.value.message
    assert str(caught.value).startswith(f"{path}:{line}: " if line else f"{path}: ")


def test_a_table_that_cannot_be_read_is_refused(tmp_path):
    latin = tmp_path / "latin.csv"
    latin.write_bytes(HEADER.encode() + "FR,1,1 \xa0\n".encode("latin-1"))
    for path, said in ((tmp_path / "missing.csv", "no such file"), (tmp_path, "is a folder"),
                       (latin, "is not UTF-8 text")):
        with pytest.raises(CreditsTableError, match=said):
            Rates.load(str(path))


def test_serve_refuses_to_start_with_a_bad_table(tmp_path, capsys, monkeypatch):
    path = table(tmp_path, HEADER + "US,1,1\nUS,2,2\n*,5,2\n")
    monkeypatch.delenv("CANVASS_CREDITS", raising=False)
    assert cli.main(["serve", "--insecure", "--flows", str(tmp_path), "--credits", path]) == 2
    err = capsys.readouterr().err
    assert f"{path}:3: US appears twice" in err and "Traceback" not in err
    monkeypatch.setenv("CANVASS_CREDITS", path)
    settings = Settings.from_env(type("Args", (), {"flows": ".", "host": "127.0.0.1", "port": 1,
                                                   "insecure": True, "watch": False})())
    assert settings.credits == path
    with pytest.raises(ConfigError, match="US appears twice"):
        settings.validate()


@pytest.mark.parametrize("phone, country", [
    ("+14155550100", "US"), ("+16135550123", "CA"),
    ("+15551230001", "US"),  # a test range: the main country of its calling code
    ("+447700900123", "GB"), ("+33612345678", "FR"), ("+919876543210", "IN"),
    ("+882123456", "ZZ"),  # international networks: no country
    ("not a number", "ZZ"),
])
def test_the_country_of_a_number(phone, country):
    assert region(phone) == country
    assert Rates.load(None).region(phone) == country


def test_whatsapp_counts_one_segment_per_message_and_sms_at_least_one():
    assert charged_segments("whatsapp", 0) == 1
    assert charged_segments("sms", 3) == 3 and charged_segments("sms", 0) == 1


# ---------------------------------------------------------------- ledger, usage, balance


async def test_the_ledger_usage_balance_and_consumption(records_url):
    engine = connect(records_url)
    try:
        assert await credits.balance(engine) == 0
        now = datetime(2024, 5, 1, 12, tzinfo=UTC)
        assert await credits.add(engine, Decimal("1000"), "top-up", "ops", now) == 1000
        assert await credits.add(engine, Decimal("-0.5"), "refund", None, now) == Decimal("999.5")
        await credits.add_usage(engine, [
            usage_row(country="GB", segments=2, credits_used="4"),
            usage_row(country="GB", direction="in", segments=2, credits_used="2.25"),
            usage_row(survey="t", distribution="d1", segments=1, credits_used="1",
                      day=date(2024, 5, 2)),
        ])
        # the same key again adds to its row: messages, segments and credits
        await credits.add_usage(engine, [usage_row(country="GB", segments=3, credits_used="6.5")])
        assert await credits.totals(engine) == (Decimal("999.5"), Decimal("13.75"))
        assert await credits.balance(engine) == Decimal("985.75")

        assert await credits.consumption(engine, []) == [
            {"messages": 4, "segments": 8, "credits": Decimal("13.75")}]
        assert await credits.consumption(engine, ["survey", "direction"]) == [
            {"survey": "s", "direction": "in", "messages": 1, "segments": 2, "credits": Decimal("2.25")},
            {"survey": "s", "direction": "out", "messages": 2, "segments": 5, "credits": Decimal("10.5")},
            {"survey": "t", "direction": "out", "messages": 1, "segments": 1, "credits": Decimal("1")}]
        assert await credits.consumption(engine, ["distribution", "country", "day"],
                                         since=date(2024, 5, 2)) == [
            {"distribution": "d1", "country": "US", "day": date(2024, 5, 2), "messages": 1,
             "segments": 1, "credits": Decimal("1")}]
        assert await credits.consumption(engine, ["day"], until=date(2024, 5, 1)) == [
            {"day": date(2024, 5, 1), "messages": 3, "segments": 7, "credits": Decimal("12.75")}]
        assert await credits.consumption(engine, [], since=date(2025, 1, 1)) == []
        with pytest.raises(credits.BadGrouping):
            await credits.consumption(engine, ["phone"])
    finally:
        await engine.dispose()


def test_groupings_as_written():
    assert credits.groupings(" Survey, country,survey ") == ["survey", "country"]
    assert credits.groupings("") == [] and credits.groupings(None) == []
    with pytest.raises(credits.BadGrouping, match="cannot group by phone: by takes survey"):
        credits.groupings("survey,phone")


# ---------------------------------------------------------------- the usage accumulator


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_usage_counts_in_memory_and_keeps_its_counts_while_the_database_cannot_take_them(tmp_path):
    url = f"sqlite:///{tmp_path / 'late.db'}"  # no schema yet: every write fails
    engine, clock = connect(url), Clock(datetime(2024, 5, 1, 23, 59, 59, tzinfo=UTC).timestamp())
    usage = Usage(engine, Rates.load(None), clock)
    try:
        usage.count("s", None, "+447700900123", "out", 2)
        usage.count("s", None, "+447700900123", "out", 1)
        clock.now += 2  # the next day (UTC)
        usage.count("s", "d1", "+14155550100", "in", 1)
        assert len(usage.counts) == 2  # one key per day
        with pytest.raises(Exception, match="no such table"):
            await usage.flush()
        clock.now -= 2
        usage.count("s", None, "+447700900123", "out", 1)  # counted meanwhile, added to the kept
        await migrate.upgrade(engine)
        assert await usage.flush() == 2
        assert usage.counts == {}
        assert await credits.consumption(engine, ["day", "distribution", "country", "direction"]) == [
            {"day": date(2024, 5, 1), "distribution": "", "country": "GB", "direction": "out",
             "messages": 3, "segments": 4, "credits": Decimal("8")},
            {"day": date(2024, 5, 2), "distribution": "d1", "country": "US", "direction": "in",
             "messages": 1, "segments": 1, "credits": Decimal("1")}]
        assert await usage.flush() == 0
    finally:
        await engine.dispose()


async def test_usage_without_credits_counts_segments_at_no_price_and_flushes_at_stop(database_url):
    import asyncio

    engine = connect(database_url)
    usage = Usage(engine, None, Clock(START_TIME), interval=3600)
    try:
        task = asyncio.create_task(usage.run())
        await asyncio.sleep(0.05)  # its first round has run
        usage.count("s", None, "+33612345678", "out", 3)
        await usage.stop(task)
        assert await credits.consumption(engine, ["country"]) == [
            {"country": "FR", "messages": 1, "segments": 3, "credits": Decimal("0")}]
    finally:
        await engine.dispose()


async def test_a_count_the_database_would_refuse_never_holds_back_the_others(records_url):
    engine = connect(records_url)
    usage = Usage(engine, None, Clock(START_TIME))
    try:
        with pytest.raises(ValueError, match="direction"):
            usage.count("s", None, "+14155550100", "outbound", 1)
        usage.count("s", "d" * 40, "+14155550100", "out", 1)  # longer than its column: clipped
        usage.count("s" * 250, None, "+14155550100", "in", 1)
        assert await usage.flush() == 2
        assert await credits.consumption(engine, ["survey", "distribution"]) == [
            {"survey": "s", "distribution": "d" * 32, "messages": 1, "segments": 1, "credits": 0},
            {"survey": "s" * 200, "distribution": "", "messages": 1, "segments": 1, "credits": 0}]
    finally:
        await engine.dispose()


# ---------------------------------------------------------------- counted over the webhook


@pytest.fixture
async def client(make_client, settings):
    """A server pricing with the shipped credits table (credits are off unless asked for)."""
    return await make_client(dataclasses.replace(settings, credits="shipped"))


async def test_a_conversation_over_the_webhook_is_counted_in_and_out(client):
    usage = client.server.app[SERVICE].usage
    uk = Phone(client, "+447700900123")
    long_reason = "Friendly staff " * 12  # 180 GSM-7 characters: 2 segments
    assert await uk.send("@feed") == [SCORE_PROMPT]
    await uk.send("9")
    form = uk.form(long_reason)
    await uk.post(form)
    assert (await uk.post(form)).status == 200  # a redelivery is not counted again
    await uk.send("2")  # closes the session: still the survey's
    await uk.send("hello")  # in no survey
    whatsapp = Phone(client, "+14155550100", channel="whatsapp")
    await whatsapp.send("@feed")
    await whatsapp.send("9")
    await whatsapp.send("x" * 300)  # WhatsApp: one segment, however long
    await usage.flush()
    engine = connect(client.server.app[SERVICE].settings.database_url)
    try:
        rows = await credits.consumption(engine, ["survey", "country", "direction", "day"])
    finally:
        await engine.dispose()
    assert rows == [
        {"survey": "", "country": "GB", "direction": "in", "day": START_DAY,
         "messages": 1, "segments": 1, "credits": Decimal("1")},
        {"survey": "", "country": "GB", "direction": "out", "day": START_DAY,
         "messages": 1, "segments": 1, "credits": Decimal("2")},
        {"survey": "feedback", "country": "GB", "direction": "in", "day": START_DAY,
         "messages": 4, "segments": 5, "credits": Decimal("5")},
        {"survey": "feedback", "country": "GB", "direction": "out", "day": START_DAY,
         "messages": 4, "segments": 4, "credits": Decimal("8")},
        {"survey": "feedback", "country": "US", "direction": "in", "day": START_DAY,
         "messages": 3, "segments": 3, "credits": Decimal("3")},
        {"survey": "feedback", "country": "US", "direction": "out", "day": START_DAY,
         "messages": 3, "segments": 3, "credits": Decimal("3")},
    ]


async def test_the_replies_to_a_distribution_are_counted_for_it(client):
    started = await client.post("/admin/surveys/feedback/start", headers=admin_headers(),
                                json={"to": "+14155550111", "fields": {"distribution_id": "dist-7"}})
    assert started.status == 201, await started.text()
    await Phone(client, "+14155550111").send("10")
    usage = client.server.app[SERVICE].usage
    await usage.flush()
    engine = connect(client.server.app[SERVICE].settings.database_url)
    try:
        rows = await credits.consumption(engine, ["survey", "distribution", "direction"])
    finally:
        await engine.dispose()
    assert rows == [{"survey": "feedback", "distribution": "dist-7", "direction": "in",
                     "messages": 1, "segments": 1, "credits": Decimal("1")},
                    {"survey": "feedback", "distribution": "dist-7", "direction": "out",
                     "messages": 2, "segments": 2, "credits": Decimal("2")}]  # the start's too


# ---------------------------------------------------------------- the admin API


@pytest.fixture
async def credits_client(make_client, settings, records_url):
    return await make_client(dataclasses.replace(settings, database_url=records_url, credits="shipped"))


async def test_the_api_answers_the_balance_and_the_consumption(credits_client):
    app = credits_client.server.app
    answer = await credits_client.get("/admin/credits", headers=admin_headers())
    assert await answer.json() == {"balance": 0, "enabled": True, "rates": "shipped"}
    engine = app[SERVICE].usage.engine
    await credits.add(engine, Decimal("100"), "top-up", None, datetime.now(UTC))
    await credits.add_usage(engine, [usage_row(survey="=cmd", credits_used="2.5"),
                                     usage_row(country="GB", day=date(2024, 5, 3))])
    answer = await credits_client.get("/admin/credits", headers=admin_headers())
    assert (await answer.json())["balance"] == 96.5

    answer = await credits_client.get("/admin/credits/usage", headers=admin_headers(),
                                      params={"by": "survey,country", "until": "2024-05-02"})
    assert answer.status == 200
    assert await answer.json() == {"by": ["survey", "country"], "since": None, "until": "2024-05-02",
                                   "rows": [{"survey": "=cmd", "country": "US", "messages": 1,
                                             "segments": 1, "credits": 2.5}]}
    answer = await credits_client.get("/admin/credits/usage", headers=admin_headers(),
                                      params={"by": "day,survey", "format": "csv"})
    assert answer.content_type == "text/csv"
    assert await answer.text() == ("day,survey,messages,segments,credits\r\n"
                                   "2024-05-01,'=cmd,1,1,2.5\r\n2024-05-03,s,1,1,1\r\n")
    answer = await credits_client.get("/admin/credits/usage", headers=admin_headers())
    assert (await answer.json())["rows"] == [{"messages": 2, "segments": 2, "credits": 3.5}]


@pytest.mark.parametrize("params, reason", [
    ({"by": "phone"}, "bad_grouping"),
    ({"since": "yesterday"}, "bad_day"),
    ({"until": "2024-13-01"}, "bad_day"),
    ({"since": "2024-05-02", "until": "2024-05-01"}, "bad_day"),
    ({"format": "xml"}, "bad_format"),
])
async def test_bad_report_parameters_get_a_400(client, params, reason):
    answer = await client.get("/admin/credits/usage", headers=admin_headers(), params=params)
    assert answer.status == 400
    assert (await answer.json())["error"] == reason


async def test_the_credit_routes_want_the_admin_token(client):
    for path in ("/admin/credits", "/admin/credits/usage"):
        assert (await client.get(path)).status == 401


@pytest.mark.parametrize("spec", [None, "none"])  # off unless a table is asked for
async def test_credits_off_and_an_operator_table_are_said_by_the_api(make_client, settings, tmp_path, spec):
    off = await make_client(dataclasses.replace(settings, credits=spec))
    assert await (await off.get("/admin/credits", headers=admin_headers())).json() == {
        "balance": 0, "enabled": False, "rates": None}
    await Phone(off, "+447700900123").send("@feed")
    await off.server.app[SERVICE].usage.flush()  # counted still: segments, at no price
    rows = await credits.consumption(off.server.app[SERVICE].usage.engine, ["direction"])
    assert [(row["segments"], row["credits"]) for row in rows] == [(1, 0), (1, 0)]

    path = tmp_path / "mine.csv"
    shutil.copyfile(SHIPPED, path)
    mine = await make_client(dataclasses.replace(settings, credits=str(path)))
    assert (await (await mine.get("/admin/credits", headers=admin_headers())).json())["rates"] == str(path)


# ---------------------------------------------------------------- the commands


def test_the_credits_commands(records_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", records_url)
    assert cli.main(["credits", "add", "1000", "--reason", "May top-up", "--by", "ana"]) == 0
    assert json.loads(capsys.readouterr().out) == {"added": 1000, "reason": "May top-up",
                                                   "by": "ana", "balance": 1000}
    assert cli.main(["credits", "add", "-12.5"]) == 0
    assert json.loads(capsys.readouterr().out)["reason"] == "taken back"
    assert cli.main(["credits", "show"]) == 0
    assert json.loads(capsys.readouterr().out) == {"balance": 987.5, "added": 987.5, "used": 0}

    import asyncio

    async def use():
        engine = connect(records_url)
        try:
            await credits.add_usage(engine, [usage_row(country="GB", segments=2, credits_used="4"),
                                             usage_row(day=date(2024, 5, 9))])
        finally:
            await engine.dispose()

    asyncio.run(use())
    assert cli.main(["credits", "report", "--by", "day,country"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "day         country  messages  segments  credits",
        "2024-05-01  GB              1         2        4",
        "2024-05-09  US              1         1        1"]
    assert cli.main(["credits", "report", "--since", "2024-05-02", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"messages": 1, "segments": 1, "credits": 1}]
    assert cli.main(["credits", "report", "--by", "country", "--format", "csv"]) == 0
    assert capsys.readouterr().out == "country,messages,segments,credits\r\nGB,1,2,4\r\nUS,1,1,1\r\n"
    assert cli.main(["credits", "show"]) == 0
    assert json.loads(capsys.readouterr().out)["balance"] == 982.5


@pytest.mark.parametrize("argv, said", [
    (["add", "lots"], "'lots' is not an amount of credits"),
    (["add", "0"], "a number other than 0"),
    (["add", "1.23456"], "more than 4 decimals"),
    (["add", "inf"], "is not an amount"),
    (["report", "--by", "phone"], "cannot group by phone"),
    (["report", "--since", "May"], "--since 'May' is not a day"),
    (["report", "--since", "2024-05-02", "--until", "2024-05-01"], "is after --until"),
])
def test_the_commands_refuse_what_they_cannot_do(database_url, monkeypatch, capsys, argv, said):
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli.main(["credits", *argv]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


def test_the_commands_say_when_the_schema_is_behind(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'empty.db'}")
    assert cli.main(["credits", "show"]) == 1
    assert "run `canvass db upgrade`" in capsys.readouterr().err


async def test_a_distribution_the_balance_cannot_pay_for_is_refused_with_the_figures(make_client, settings):
    client = await make_client(dataclasses.replace(settings, credits="shipped"))
    contacts = "Phone,FirstName\n+12015550101,Al\n+447400123456,Cy\n"
    imported = await client.post("/admin/lists/people/import", data=contacts.encode(),
                                 headers={**admin_headers(), "Content-Type": "text/csv"})
    assert imported.status == 200
    body = {"survey": "feedback", "list": "people"}
    refused = await client.post("/admin/distributions", json=body, headers=admin_headers())
    assert refused.status == 402
    answer = await refused.json()
    assert answer["error"] == "insufficient_credits" and answer["balance"] == 0
    assert answer["needed"] == answer["estimate"]["credits"] == 3  # US 1 + GB 2, one segment each
    listed = await client.get("/admin/distributions", headers=admin_headers())
    assert (await listed.json())["distributions"] == []  # nothing written
    await credits.add(client.server.app[SERVICE].usage.engine, Decimal(3), "top-up", None, datetime.now(UTC))
    assert (await client.post("/admin/distributions", json=body, headers=admin_headers())).status == 201


def test_a_north_american_numbers_country_follows_its_area_code_once_learnt():
    from engine.sms.credits import _NANP_AREAS, region

    assert region("+14165550123") == "CA" and region("+12125550123") == "US"  # Toronto, New York
    assert _NANP_AREAS["+1416"] == "CA" and _NANP_AREAS["+1212"] == "US"
    assert region("+14165559876") == "CA" and region("+18765550123") == "JM"  # learnt; Jamaica
    assert region("+15550100123") == "US"  # no area's number: the code's main country, not learnt
    assert "+1555" not in _NANP_AREAS
