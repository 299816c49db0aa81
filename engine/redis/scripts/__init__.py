"""The Lua scripts engine.redis.store runs, one `.lua` file each, and the one place that turns
a typed call into a script's KEYS and ARGV.

Every script file opens with comment lines saying what it does and returns; among them, its
header:

  -- include: revision.lua        (optional, repeatable) that file's text goes before this one's
  -- KEYS: respondent timers      the names of its KEYS, in order
  -- ARGV: revision member due    the names of its ARGV, in order

A name ending in `...` is a variadic tail: it takes the rest of KEYS or ARGV (none or more).
The body then binds each name to a local at its position, `local due = ARGV[3]`, and a
variadic one to where it begins, `local streams = 7  -- KEYS[streams...]` (a test holds
these to the header too).
Including is the only way scripts share Lua (revision.lua defines `revision_of`); nothing
else is done to a file's text. Python calls a script with a typed call, a NamedTuple whose
fields are the header's names, KEYS then ARGV, in the same order (a variadic field holds a
tuple); `Lua` checks the two agree when it loads the file, and `Lua.evalsha` flattens a call.
"""

from __future__ import annotations

import hashlib
import re
from importlib.resources import files
from typing import Any, NamedTuple

_HEADER = re.compile(r"^-- (include|KEYS|ARGV):(.*)$", re.MULTILINE)


class ScriptHeaderError(ValueError):
    """A script's header and its typed call disagree (or the header is malformed)."""


class Header(NamedTuple):
    includes: tuple[str, ...]
    keys: tuple[str, ...]  # names as written, a variadic one ending in '...'
    argv: tuple[str, ...]


def source(filename: str) -> str:
    """The text of one script file in this package, as written."""
    return files(__name__).joinpath(filename).read_text(encoding="utf-8")


def header(filename: str) -> Header:
    """The includes, KEYS and ARGV a script file's header names."""
    found: dict[str, list[str]] = {"include": [], "KEYS": [], "ARGV": []}
    for part, names in _HEADER.findall(source(filename)):
        found[part].extend(names.split())
    return Header(tuple(found["include"]), tuple(found["KEYS"]), tuple(found["ARGV"]))


def compose(filename: str) -> str:
    """The script as Redis runs it: its includes' text, then its own."""
    return "".join(source(name) for name in (*header(filename).includes, filename))


def fields(names: tuple[str, ...]) -> tuple[str, ...]:
    """Header names as typed-call field names (the variadic mark dropped)."""
    return tuple(name.removesuffix("...") for name in names)


class Lua:
    """One script, loaded once: its composed text and SHA, and how its typed call flattens."""

    def __init__(self, filename: str, call: type[tuple]):
        keys, argv = (head := header(filename)).keys, head.argv
        if fields(keys) + fields(argv) != call._fields:
            raise ScriptHeaderError(
                f"{filename}: its header names KEYS {' '.join(keys)} and ARGV {' '.join(argv)}, "
                f"but {call.__name__} has the fields {' '.join(call._fields)}")
        for names in (keys, argv):
            if any(name.endswith("...") for name in names[:-1]):
                raise ScriptHeaderError(f"{filename}: only the last of KEYS or ARGV may end in '...'")
        self.filename, self.call = filename, call
        self.text = compose(filename)
        self.sha = hashlib.sha1(self.text.encode()).hexdigest()
        self._keys = len(keys)
        self._keys_variadic = bool(keys) and keys[-1].endswith("...")
        self._argv_variadic = bool(argv) and argv[-1].endswith("...")

    def evalsha(self, call: tuple) -> tuple[Any, ...]:
        """EVALSHA's command for one call: its fields in order, a variadic one spread out.
        (One expression per shape: this runs for every webhook.)"""
        keys = self._keys
        if self._keys_variadic:
            tail = call[keys - 1]
            if self._argv_variadic:
                return ("EVALSHA", self.sha, keys - 1 + len(tail), *call[:keys - 1], *tail,
                        *call[keys:-1], *call[-1])
            return ("EVALSHA", self.sha, keys - 1 + len(tail), *call[:keys - 1], *tail, *call[keys:])
        if self._argv_variadic:
            return ("EVALSHA", self.sha, keys, *call[:-1], *call[-1])
        return ("EVALSHA", self.sha, keys, *call)
