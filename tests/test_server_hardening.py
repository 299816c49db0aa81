"""Hostile input and careless configuration: insecure mode only where it is safe, no 500s from
headers or charsets, log lines nobody can forge, admin JSON checked strictly, numbers read strictly."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from types import SimpleNamespace

import pytest
from conftest import ADMIN_TOKEN, admin_headers, free_port
from fake_twilio import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_BASE_URL, Phone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.runtime.exports import jsonl_line
from engine.runtime.settings import ConfigError, Settings
from engine.runtime.twilio import BadWebhook, parse_inbound, sign
from engine.sms.phones import InvalidNumber, to_e164
from engine.tools.cli import main

SERVE_ENV = ("TWILIO_AUTH_TOKEN", "CANVASS_INSECURE", "TWILIO_ACCOUNT_SID", "CANVASS_ADMIN_TOKEN",
             "PUBLIC_BASE_URL", "REDIS_URL", "TWILIO_API_BASE_URL")
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def clean_env(monkeypatch):
    for name in SERVE_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def configured(**overrides) -> Settings:
    return Settings(**{"flows_dir": "surveys", **overrides})


# ---------------------------------------------------------------- insecure mode (item 1)


@pytest.mark.parametrize("overrides, named", [
    pytest.param({"auth_token": "t"}, "TWILIO_AUTH_TOKEN", id="auth-token"),
    pytest.param({"account_sid": "AC1"}, "TWILIO_ACCOUNT_SID", id="account-sid"),
    pytest.param({"auth_token": "t", "account_sid": "AC1", "admin_token": "a"}, "TWILIO_AUTH_TOKEN", id="all-set"),
    pytest.param({"host": "0.0.0.0"}, "loopback", id="any-address"),
    pytest.param({"host": "192.168.1.7"}, "loopback", id="lan-address"),
    pytest.param({"host": "surveys.example.com"}, "loopback", id="host-name"),
    pytest.param({"host": ""}, "loopback", id="every-interface"),
])
def test_insecure_mode_is_refused_with_credentials_or_off_loopback(overrides, named):
    with pytest.raises(ConfigError) as refused:
        configured(insecure=True, **overrides).validate()
    assert named in str(refused.value)
    assert "insecure" in str(refused.value).lower()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.5.5.5", "::1", "localhost"])
def test_insecure_mode_on_loopback_without_credentials_starts(host):
    warnings = configured(insecure=True, host=host).validate()
    assert any("NOT checked" in warning for warning in warnings)


def test_a_twilio_token_requires_the_admin_token():
    with pytest.raises(ConfigError) as refused:
        configured(auth_token="t", account_sid="AC1").validate()
    assert "CANVASS_ADMIN_TOKEN" in str(refused.value)
    assert configured(auth_token="t", account_sid="AC1", admin_token="a", public_base_url="https://x.example").validate() == []


def test_serve_says_why_it_refuses_insecure_mode_with_credentials(clean_env, capsys):
    clean_env.setenv("TWILIO_AUTH_TOKEN", "t")
    clean_env.setenv("CANVASS_INSECURE", "yes")
    assert main(["serve", "--flows", "tests/flows/server"]) == 2
    said = capsys.readouterr().err
    assert "TWILIO_AUTH_TOKEN" in said and "CANVASS_INSECURE" in said


def test_the_dev_server_settings_still_start(clean_env):
    args = SimpleNamespace(flows="surveys", host="127.0.0.1", port=8080, watch=False, insecure=True)
    assert Settings.from_env(args).validate()


async def test_the_admin_api_stays_closed_in_insecure_mode_with_twilio_credentials(make_client, settings):
    client = await make_client(dataclasses.replace(settings, admin_token=None, insecure=True))
    assert (await client.get("/admin/flows")).status == 401
    assert (await client.post("/admin/surveys/feedback/start", json={"to": "+15551239001"})).status == 401


# ---------------------------------------------------------------- headers, charsets, log lines (item 7)


async def raw_request(client, method: str, path: bytes, headers: dict[str, bytes], body: bytes = b"") -> tuple[int, bytes]:
    """Send the bytes as written (an HTTP client would re-encode the headers as UTF-8): status, body."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers.items())
    writer.write(method.encode() + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + head
                 + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
    answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("value", [b"Bearer \xff", b"Bearer \x80abc", b"Bearer t\xc3\xb6k\xc3\xa9n",
                                   b"Bearer " + ADMIN_TOKEN.encode() + b"\xe9", b"Bear\xe9r x", b"\xff",
                                   b"Bearer \xe2\x80\xa8" + ADMIN_TOKEN.encode()])
async def test_a_non_ascii_bearer_token_is_a_401(client, value):
    status, _ = await raw_request(client, "GET", b"/admin/flows", {"Authorization": value})
    assert status == 401


@pytest.mark.parametrize("content_type", [
    "application/x-www-form-urlencoded; charset=x-bogus",
    "application/x-www-form-urlencoded; charset=rot13",
    "application/x-www-form-urlencoded; charset=uu_codec",
    "multipart/form-data; boundary=b; charset=x-bogus",
])
async def test_an_unknown_charset_on_a_webhook_is_a_415_before_the_signature(client, redis_sync, content_type):
    before = redis_sync.dbsize()  # the flow sources
    response = await client.post("/twilio/messages", data=b"MessageSid=SM1&From=%2B15551239002&Body=hi",
                                 headers={"Content-Type": content_type, "X-Twilio-Signature": "forged"})
    assert response.status == 415, await response.text()
    assert "charset" in await response.text()
    assert redis_sync.dbsize() == before


async def test_an_unknown_charset_on_admin_json_is_a_415(client):
    response = await client.post("/admin/surveys/feedback/start", data=b'{"to": "+15551239003"}',
                                 headers={**admin_headers(), "Content-Type": "application/json; charset=x-bogus"})
    assert response.status == 415


def one_line_each(records: list[logging.LogRecord]) -> None:
    for record in records:
        message = record.getMessage()
        assert "\n" not in message and "\r" not in message and "\u2028" not in message, message


async def test_a_percent_encoded_newline_in_the_path_cannot_forge_a_log_line(make_client, settings, caplog):
    client = await make_client(dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    with caplog.at_level(logging.INFO):
        response = await client.get("/admin/responses/x%0A2026-01-01 ERROR forged%0D%E2%80%A8x",
                                    headers=admin_headers())
    assert response.status == 503
    served = [r for r in caplog.records if r.name.startswith("canvass")]
    assert served, "the 503 is logged"
    one_line_each(served)
    assert any("\\n" in r.getMessage() for r in served)


async def test_the_access_log_escapes_header_values(client, caplog):
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        status, _ = await raw_request(client, "GET", b"/healthz", {"User-Agent": b"red\xff\xfe"})
    assert status == 200
    [line] = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert "red" in line
    line.encode("utf-8")  # no lone surrogate for the log handler to choke on


HEADER_BYTES = st.binary(max_size=30).map(lambda raw: raw.replace(b"\r", b"").replace(b"\n", b""))
CHARSETS = st.sampled_from([b"", b"utf-8", b"latin-1", b"utf-16", b"x-bogus", b"rot13", b"base64", b"idna",
                            b"utf-8-sig", b'"utf-8"', b"\xff"]) | HEADER_BYTES
CONTENT_TYPES = st.builds(lambda base, charset: base + b"; charset=" + charset if charset else base,
                          st.sampled_from([b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=b",
                                           b"application/json", b"text/plain", b""]), CHARSETS)
PATHS = st.builds(lambda path, tail: path + tail,
                  st.sampled_from([b"/twilio/messages", b"/twilio/status", b"/admin/surveys/feedback/start",
                                   b"/admin/flows", b"/admin/sessions/", b"/readyz", b"/metrics", b"/nowhere"]),
                  st.sampled_from([b"", b"%0A", b"%0D%0Aforged", b"%E2%80%A8", b"%ff", b"%00", b"x%C2%85y",
                                   b"\xff", b"\xe2\x80\xa8"]))


@FUZZ
@given(path=PATHS, content_type=CONTENT_TYPES, authorization=HEADER_BYTES, signature=HEADER_BYTES,
       body=st.binary(max_size=80) | st.just(b"MessageSid=SM1&From=%2B15551239004&Body=hi"))
async def test_fuzzed_headers_paths_and_content_types_never_fail(client, caplog, path, content_type, authorization,
                                                                 signature, body):
    headers = {"Content-Type": content_type, "Authorization": authorization, "X-Twilio-Signature": signature}
    caplog.clear()
    with caplog.at_level(logging.INFO):
        method = "GET" if path.startswith((b"/admin/flows", b"/readyz", b"/metrics")) else "POST"
        status, text = await raw_request(client, method, path, headers, body)
    assert status < 500, (status, text)
    assert b"Traceback" not in text
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    one_line_each(caplog.records)


# ---------------------------------------------------------------- admin JSON (item 9)


async def start(client, data: bytes | str):
    return await client.post("/admin/surveys/feedback/start", data=data,
                             headers={**admin_headers(), "Content-Type": "application/json"})


@pytest.mark.parametrize("body, named", [
    pytest.param('{"to": "+15551239010", "fields": {"n": ' + "9" * 5000 + "}}", "digits", id="5000-digits"),
    pytest.param('{"to": "+15551239010", "fields": {"FirstName": "\\ud800"}}', "surrogate", id="lone-surrogate"),
    pytest.param('{"to": "+15551239010\\udfff"}', "surrogate", id="surrogate-in-to"),
    pytest.param('{"to": "+15551239010", "fields": {"n": NaN}}', "NaN", id="nan"),
    pytest.param('{"to": "+15551239010", "fields": {"n": -Infinity}}', "Infinity", id="infinity"),
    pytest.param('{"to": "+15551239010", "fields": {"n": 1e999}}', "too large", id="1e999"),
    pytest.param('{"to": "+15551239010", "fields": {"n": true}}', "true", id="true"),
    pytest.param('{"to": "+15551239010", "fields": {"n": null}}', "null", id="null"),
    pytest.param('{"to": "+15551239010", "fields": {"n": {"a": 1}}}', "object", id="nested-object"),
    pytest.param('{"to": "+15551239010", "fields": {"n": [1]}}', "list", id="nested-list"),
    pytest.param('{"to": "+15551239010", "fields": {"FirstName": "A\\u0001na"}}', "control", id="c0-control"),
    pytest.param('{"to": "+15551239010", "fields": {"FirstName": "A\\u000bna"}}', "control", id="vertical-tab"),
    pytest.param('{"to": "+15551239010", "fields": {"FirstName": "A\\uffffna"}}', "U+FFFF", id="non-character"),
    pytest.param('{"to": "+15551239010", "fields": {"First\\u0000Name": "Ana"}}', "control", id="control-in-name"),
])
async def test_admin_start_rejects_unusable_json_with_a_400(client, fake_twilio, body, named):
    response = await start(client, body)
    assert response.status == 400, await response.text()
    error = await response.json()
    assert error["error"] in ("bad_json", "bad_fields"), error
    assert named.lower() in error["message"].lower(), error
    assert fake_twilio.messages == []


async def test_admin_start_takes_text_and_numbers_in_fields(client, fake_twilio):
    response = await start(client, json.dumps({"to": "+15551239011", "fields": {
        "FirstName": "Ana\tMaria\nG.", "Visits": 3, "Spent": 12.5}}))
    assert response.status == 201, await response.text()


# ---------------------------------------------------------------- From (item 9)


@pytest.mark.parametrize("number", ["tel:+15551239020", "sms:+15551239020", "+15551239020;ext=12",
                                    "+1 555 123 9020 x123", "+1 555 123 9020 ext. 7", "TEL:+15551239020",
                                    "+1-800-FLOWERS", "+１５５５１２３９０２０", "whatsapp:tel:+15551239020"])
def test_prefixes_extensions_and_letters_are_not_a_number(number):
    with pytest.raises(InvalidNumber):
        to_e164(number.removeprefix("whatsapp:"))
    with pytest.raises(BadWebhook):
        parse_inbound({"MessageSid": "SM1", "From": number, "Body": "hi"})


@pytest.mark.parametrize("number", ["+15551239021", "+1 (555) 123-9021", "+1.555.123.9021", " +15551239021 "])
def test_plain_numbers_with_punctuation_still_read(number):
    assert to_e164(number) == "+15551239021"


async def test_a_webhook_from_a_tel_address_is_a_400(client, redis_sync):
    form = {"MessageSid": "SM" + "5" * 32, "AccountSid": ACCOUNT_SID, "From": "tel:+15551239022", "Body": "@FEED"}
    response = await client.post("/twilio/messages", data=form,
                                 headers={"X-Twilio-Signature": sign(AUTH_TOKEN, PUBLIC_BASE_URL + "/twilio/messages",
                                                                     form)})
    assert response.status == 400
    assert not redis_sync.keys("*15551239022*")


# ---------------------------------------------------------------- exports (item 9)


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_jsonl_lines_escape_unicode_line_separators(separator):
    line = jsonl_line({"answers": {"reason": f"a{separator}b"}})
    assert separator not in line
    assert line.count("\n") == 1 and len(line.splitlines()) == 1
    assert json.loads(line)["answers"]["reason"] == f"a{separator}b"


async def test_a_jsonl_export_is_one_record_per_line_whatever_the_answers(client):
    phone = Phone(client, "+15551239030")
    await phone.send("@FEED")
    await phone.send("3")
    await phone.send("too\u2028pricey\u2029really\x85so")
    await phone.send("1")
    response = await client.get("/admin/responses/feedback", headers=admin_headers())
    lines = (await response.text()).splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["answers"]["reason"] == "too\u2028pricey\u2029really\x85so"


# ---------------------------------------------------------------- Redis unreachable (item 9)


async def test_without_redis_the_server_says_once_how_to_start_one(make_client, settings, caplog):
    with caplog.at_level(logging.INFO):
        await make_client(dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"),
                          timer_interval=0.02)
        await asyncio.sleep(0.4)
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert sum("./dev serve" in message for message in said) == 1, said
    assert any("redis.conf" in message and "REDIS_URL" in message for message in said)
    assert len(said) <= 3, said
