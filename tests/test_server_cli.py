"""`canvass serve` configuration rules, insecure mode, and `canvass phone` against a live server."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest
from conftest import REPO, free_port
from fake_twilio import AUTH_TOKEN, Phone

from engine.redis.store import Replication
from engine.runtime.settings import ConfigError, Settings
from engine.tools import phone as phone_tool
from engine.tools.cli import build_parser, main
from engine.tools.distributions import DEFAULT_SERVER
from engine.tools.phone import run_phone

SERVE_ENV = ("TWILIO_AUTH_TOKEN", "CANVASS_INSECURE", "TWILIO_ACCOUNT_SID", "CANVASS_ADMIN_TOKEN",
             "PUBLIC_BASE_URL", "REDIS_URL", "TWILIO_API_BASE_URL", "REDIS_WAIT_REPLICAS", "REDIS_WAIT_TIMEOUT_MS")


@pytest.fixture
def clean_env(monkeypatch):
    for name in SERVE_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def serve_args(**overrides):
    return SimpleNamespace(**{"flows": "surveys", "host": "127.0.0.1", "port": 8080, "watch": False,
                              "insecure": False, **overrides})


def test_serve_refuses_to_start_without_an_auth_token(clean_env, capsys):
    assert main(["serve", "--flows", "tests/flows/server"]) == 2
    assert "TWILIO_AUTH_TOKEN is not set" in capsys.readouterr().err


@pytest.mark.parametrize("env, flag, insecure", [
    ({}, True, True),
    ({"CANVASS_INSECURE": "1"}, False, True),
    ({"CANVASS_INSECURE": "0"}, False, False),
])
def test_insecure_mode_comes_from_the_flag_or_the_environment(clean_env, env, flag, insecure):
    for name, value in env.items():
        clean_env.setenv(name, value)
    settings = Settings.from_env(serve_args(insecure=flag))
    assert settings.insecure is insecure
    if insecure:
        assert any("NOT checked" in w for w in settings.validate())
    else:
        with pytest.raises(ConfigError):
            settings.validate()


def test_settings_read_the_environment(clean_env):
    for name, value in {"TWILIO_AUTH_TOKEN": "t", "TWILIO_ACCOUNT_SID": "AC1", "REDIS_URL": "redis://r:1/2",
                        "PUBLIC_BASE_URL": "https://x.example", "TWILIO_API_BASE_URL": "http://127.0.0.1:9",
                        "CANVASS_ADMIN_TOKEN": "a", "TWILIO_FROM_NUMBER": "+15550001111"}.items():
        clean_env.setenv(name, value)
    settings = Settings.from_env(serve_args(port=9000))
    assert (settings.auth_token, settings.account_sid, settings.redis_url, settings.api_base_url,
            settings.admin_token, settings.from_number, settings.port) == (
        "t", "AC1", "redis://r:1/2", "http://127.0.0.1:9", "a", "+15550001111", 9000)
    assert settings.public_url("/twilio/status") == "https://x.example/twilio/status"
    assert settings.validate() == []


def test_commits_wait_for_replicas_only_when_asked(clean_env):
    assert Settings.from_env(serve_args()).replication == Replication(0, 100)
    assert Replication(0, 100).command is None  # no WAIT sent
    clean_env.setenv("REDIS_WAIT_REPLICAS", "1")
    clean_env.setenv("REDIS_WAIT_TIMEOUT_MS", "250")
    assert Settings.from_env(serve_args()).replication == Replication(1, 250)


@pytest.mark.parametrize("name, value", [("REDIS_WAIT_REPLICAS", "-1"), ("REDIS_WAIT_REPLICAS", "one"),
                                         ("REDIS_WAIT_REPLICAS", "17"), ("REDIS_WAIT_TIMEOUT_MS", "0"),
                                         ("REDIS_WAIT_TIMEOUT_MS", "501"), ("REDIS_WAIT_TIMEOUT_MS", "0.5")])
def test_a_wrong_wait_setting_stops_the_start_and_says_what_to_set(clean_env, name, value):
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError, match=f"{name} is '{value}'"):
        Settings.from_env(serve_args())


async def test_insecure_without_a_token_accepts_unsigned_webhooks(make_client, settings):
    client = await make_client(dataclasses.replace(settings, auth_token=None, insecure=True))
    phone = Phone(client, "+15551230401")
    response = await phone.post(phone.form("@feed"), signature="")
    assert response.status == 200


async def test_insecure_with_a_token_still_checks_signatures(make_client, settings):
    client = await make_client(dataclasses.replace(settings, insecure=True))
    phone = Phone(client, "+15551230402")
    assert (await phone.post(phone.form("@feed"), signature="forged")).status == 403


async def test_phone_texts_a_live_server_with_signed_webhooks(make_client, settings, clean_env):
    clean_env.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    client = await make_client(dataclasses.replace(settings, public_base_url=None))
    args = SimpleNamespace(server=str(client.make_url("")), from_="+1 555 123 0403", to="+15550000000")
    out = io.StringIO()
    code = await asyncio.to_thread(run_phone, args, io.StringIO("@feed\n9\nSTOP\nhello\n"), out)
    assert code == 0
    assert out.getvalue().splitlines() == [
        "> @feed",
        "< Hi ! How likely are you to recommend us? Reply 0-10. Text STOP to opt out.",
        "> 9",
        "< What is the main reason for your score?",
        "> STOP",
        "> hello",
    ]


async def test_phone_finds_the_server_as_the_other_server_commands_do(make_client, settings, clean_env):
    """No --server: CANVASS_SERVER, else http://127.0.0.1:8080 (the README's `./dev phone --from ...`)."""
    clean_env.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    client = await make_client(dataclasses.replace(settings, public_base_url=None))
    args = build_parser().parse_args(["phone", "--from", "+15551230405"])
    assert args.server is None
    clean_env.setenv("CANVASS_SERVER", str(client.make_url("")) + "/")
    out = io.StringIO()
    assert await asyncio.to_thread(run_phone, args, io.StringIO("@feed\n"), out) == 0
    assert out.getvalue().splitlines()[1].startswith("< Hi ! How likely are you to recommend us?")
    clean_env.delenv("CANVASS_SERVER")  # then the default (here the test server's address)
    clean_env.setattr(phone_tool, "DEFAULT_SERVER", str(client.make_url("")))
    out = io.StringIO()
    assert await asyncio.to_thread(run_phone, args, io.StringIO("STOP\n"), out) == 0
    assert out.getvalue().splitlines() == ["> STOP"]
    assert phone_tool.DEFAULT_SERVER != "http://127.0.0.1:8080" and DEFAULT_SERVER == "http://127.0.0.1:8080"


async def test_phone_reports_a_refused_signature_and_an_unreachable_server(make_client, settings, clean_env,
                                                                            capsys):
    clean_env.setenv("TWILIO_AUTH_TOKEN", "not-the-servers-token")
    client = await make_client(dataclasses.replace(settings, public_base_url=None))
    args = SimpleNamespace(server=str(client.make_url("")), from_="+15551230404", to="+15550000000")
    assert await asyncio.to_thread(run_phone, args, io.StringIO("hi\n"), io.StringIO()) == 1
    assert "403" in capsys.readouterr().err
    args.server = f"http://127.0.0.1:{free_port()}"
    assert await asyncio.to_thread(run_phone, args, io.StringIO("hi\n"), io.StringIO()) == 1
    assert "cannot reach" in capsys.readouterr().err
    args.from_ = "nonsense"
    assert run_phone(args, io.StringIO("hi\n"), io.StringIO()) == 2


def test_a_second_dev_server_on_one_data_folder_is_refused_and_told_how_to_share(tmp_path):
    """Two redis-servers writing one append-only file would corrupt it."""
    from engine.tools import devserver

    held = len(devserver._LOCKS)
    try:
        devserver._record(devserver._claim(tmp_path), 6400)
        with pytest.raises(SystemExit) as refused:
            devserver._claim(tmp_path)
        assert "another ./dev serve is running" in str(refused.value)
        assert "REDIS_URL=redis://127.0.0.1:6400/0" in str(refused.value)
        devserver._claim(tmp_path / "elsewhere")  # another folder is another Redis
    finally:
        for lock in devserver._LOCKS[held:]:
            lock.close()
        del devserver._LOCKS[held:]


def test_a_redis_left_by_a_killed_dev_server_is_stopped_before_a_new_one_starts(tmp_path):
    """kill -9 of ./dev serve leaves its Redis running (its own session); the next ./dev serve
    must not start a second Redis on the same files."""
    from engine.tools import devserver

    data = tmp_path / "redis"
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from engine.tools import devserver; "
        "process, port = devserver.start_redis(Path(sys.argv[1])); "
        "print(process.pid, port, flush=True); time.sleep(60)"), str(data)],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    orphan, port = (int(word) for word in child.stdout.readline().split())
    child.kill()  # kill -9: its Redis lives on, holding the lock it inherited
    child.wait()
    assert devserver._alive(orphan) and devserver.redis_answers(port)
    held = len(devserver._LOCKS)
    try:
        process, new_port = devserver.start_redis(data)
        try:
            assert not devserver._alive(orphan)  # stopped, cleanly (SIGTERM)
            assert devserver.redis_answers(new_port)
        finally:
            devserver.stop_redis(process)
    finally:
        if devserver._alive(orphan):
            os.kill(orphan, signal.SIGKILL)
        for lock in devserver._LOCKS[held:]:
            lock.close()
        del devserver._LOCKS[held:]


def test_dev_help_names_every_canvass_command():
    import re
    import subprocess
    from pathlib import Path

    from engine.tools.cli import build_parser

    repo = Path(__file__).resolve().parents[1]
    said = subprocess.run([str(repo / "dev"), "help"], capture_output=True, text=True, check=True).stdout
    listed = re.search(r"The canvass commands: (.*?)\n\(", said, re.S).group(1)
    named = {word.strip() for word in listed.replace("\n", " ").split(",")}
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    assert named == commands
