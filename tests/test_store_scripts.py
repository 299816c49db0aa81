"""The Lua scripts' headers, their typed calls in engine.redis.store, and the installed package.

A script's KEYS and ARGV are named three times: in its header, in the `local` lines that bind
them in its body, and as the fields of its typed call. These tests hold the three equal, so
a script and the Python that calls it cannot drift apart by position."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import typing
import zipfile
from pathlib import Path

import pytest

from engine.redis import outbox, scripts, store
from engine.redis.scripts import Lua, ScriptHeaderError

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "engine" / "redis" / "scripts"
LOADED = {value.filename: value for module in (store, outbox) for value in vars(module).values()
          if isinstance(value, Lua)}
INCLUDED = {name for lua in LOADED.values() for name in scripts.header(lua.filename).includes}


def test_every_script_file_is_loaded_by_the_store_or_included():
    assert {path.name for path in SCRIPTS.glob("*.lua")} == set(LOADED) | INCLUDED
    assert not INCLUDED & set(LOADED)


@pytest.mark.parametrize("filename", sorted(LOADED))
def test_a_script_header_names_its_typed_call_fields_in_order(filename):
    head, call = scripts.header(filename), LOADED[filename].call
    assert head.keys and [*head.keys, *head.argv] == [
        name + "..." if typing.get_origin(hint) is tuple else name
        for name, hint in typing.get_type_hints(call).items()]


@pytest.mark.parametrize("filename", sorted(LOADED))
def test_a_script_body_binds_its_header_names_at_their_positions(filename):
    head, text = scripts.header(filename), scripts.source(filename)
    for part, names in (("KEYS", head.keys), ("ARGV", head.argv)):
        bound = {name: int(index) for name, index in
                 re.findall(rf"^local (\w+) = {part}\[(\d+)\]$", text, re.MULTILINE)}
        bound |= {name: int(index) for name, index in  # a variadic tail: where it begins
                  re.findall(rf"^local (\w+) = (\d+)  -- {part}\[\1\.\.\.\]", text, re.MULTILINE)}
        assert bound == {name.removesuffix("..."): n for n, name in enumerate(names, start=1)}


def test_a_call_that_disagrees_with_the_header_is_refused_when_loaded():
    class Swapped(typing.NamedTuple):
        timers: str
        respondent: str
        revision: str
        member: str
        legacy_member: str
        due: str

    with pytest.raises(ScriptHeaderError, match="reschedule.lua: its header names KEYS respondent timers"):
        Lua("reschedule.lua", Swapped)


def test_a_call_flattens_to_evalsha_in_header_order():
    call = store.CommitCall(
        respondent="r", replies="rp", timers="t", flow="f", outbox_due="od", outbox_messages="om", dedupe="d",
        dedupe_before="db", streams=("s1", "s2"), revision="1", record="[2]", record_ttl="0", sid="",
        mark="x", sent="", member="m", legacy_member="", due="", flow_ttl="", responses=("{1}", "{2}"))
    assert store.COMMIT.evalsha(call) == (
        "EVALSHA", store.COMMIT.sha, 10, "r", "rp", "t", "f", "od", "om", "d", "db", "s1", "s2",
        "1", "[2]", "0", "", "x", "", "m", "", "", "", str(store.DEDUPE_KEEP), str(store.REPLIES_KEPT),
        str(store.REPLIES_TTL), "", "", "{1}", "{2}")
    delivery = store.RecordDeliveryCall(deliveries="k", stream="s", sid="SM1", record="{}", ttl="60",
                                        distribution="", event="{}", outranking=("read",))
    assert store.RECORD_DELIVERY.evalsha(delivery)[2:] == (2, "k", "s", "SM1", "{}", "60", "", "{}", "read")


class Shape(typing.NamedTuple):
    key: str
    keys: tuple[str, ...]
    arg: str
    args: tuple[str, ...]


@pytest.mark.parametrize(("head", "command"), [
    ("-- KEYS: key keys...\n-- ARGV: arg args...\n", (3, "k", "k1", "k2", "a", "a1")),
    ("-- KEYS: key keys...\n-- ARGV: arg args\n", (3, "k", "k1", "k2", "a", ("a1",))),
    ("-- KEYS: key keys\n-- ARGV: arg args...\n", (2, "k", ("k1", "k2"), "a", "a1")),
    ("-- KEYS: key keys\n-- ARGV: arg args\n", (2, "k", ("k1", "k2"), "a", ("a1",))),
])
def test_every_shape_of_call_flattens_its_variadic_fields_only(monkeypatch, head, command):
    monkeypatch.setattr(scripts, "source", lambda filename: head)
    lua = Lua("shape.lua", Shape)
    assert lua.evalsha(Shape("k", ("k1", "k2"), "a", ("a1",))) == ("EVALSHA", lua.sha, *command)


def test_an_included_file_goes_before_the_script_once_composed():
    revision, conversation = scripts.source("revision.lua"), scripts.source("conversation.lua")
    assert LOADED["reschedule.lua"].text == revision + scripts.source("reschedule.lua")
    for filename in ("commit.lua", "read.lua", "take_over.lua"):
        assert LOADED[filename].text == conversation + scripts.source(filename)
    assert LOADED["claim.lua"].text == scripts.source("claim.lua")


def test_a_built_wheel_ships_every_script(tmp_path):
    """A non-editable install finds the scripts: they are package data of engine.redis.scripts."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "server.py", "grammar.lark"):
        shutil.copy(REPO / name, source / name)
    for package in ("dsl", "engine"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("canvass-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    assert {f"engine/redis/scripts/{path.name}" for path in SCRIPTS.glob("*.lua")} <= shipped
    assert "engine/redis/scripts/__init__.py" in shipped
