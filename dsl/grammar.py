"""The one Lark parser for grammar.lark, built once and shared."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from lark import Lark

_CANDIDATES = (
    Path(__file__).resolve().parent.parent / "grammar.lark",  # source tree / editable install
    Path(sys.prefix) / "share" / "canvass" / "grammar.lark",  # non-editable install (data-files)
)


def grammar_path() -> Path:
    for candidate in _CANDIDATES:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("grammar.lark is not installed beside the dsl package")


@functools.cache
def parser() -> Lark:
    return Lark(
        grammar_path().read_text(encoding="utf-8"),
        start=["file", "expression"],
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
    )
