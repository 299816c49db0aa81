"""Read a flow file of either form into a Survey, turning every kind of bad input into diagnostics."""

from __future__ import annotations

from pathlib import Path

from dsl import ast
from dsl.diagnostics import UNREADABLE
from dsl.errors import FlowError
from dsl.text_form import parse_text
from dsl.yaml_form import parse_yaml

MAX_BYTES = 1 << 20  # a flow file beyond 1 MiB is a mistake, not a survey
YAML_SUFFIXES = (".yaml", ".yml")
TEXT_SUFFIXES = (".survey",)


def form_of(path: str | Path) -> str | None:
    suffix = Path(path).suffix.lower()
    if suffix in YAML_SUFFIXES:
        return "yaml"
    if suffix in TEXT_SUFFIXES:
        return "text"
    return None


def decode(data: bytes, path: str) -> str:
    if len(data) > MAX_BYTES:
        raise FlowError([UNREADABLE.diagnostic(path, (0, 0), f"the file is {len(data)} bytes; a flow file may be at most {MAX_BYTES}")])
    if b"\x00" in data:
        raise FlowError([UNREADABLE.diagnostic(path, (0, 0), "the file is binary, not a flow file")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise FlowError([UNREADABLE.diagnostic(path, (line, col), "the file is not valid UTF-8", "save it as UTF-8")]) from None
    return text.replace("\r\n", "\n")


def parse_source(source: str, path: str, form: str | None = None) -> ast.Survey:
    form = form or form_of(path)
    if form == "yaml":
        return parse_yaml(source, path)
    if form == "text":
        return parse_text(source, path)
    raise FlowError([UNREADABLE.diagnostic(path, (0, 0), "unknown flow file type",
                                           "name YAML flows *.yaml or *.yml and text flows *.survey")])


def read_source(path: str | Path) -> str:
    """A flow file's text; FlowError (UNREADABLE) when it cannot be read."""
    name = str(path)
    if form_of(name) is None:
        parse_source("", name)  # raises the unknown-type diagnostic
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise FlowError([UNREADABLE.diagnostic(name, (0, 0), f"cannot read the file: {err.strerror or err}")]) from None
    return decode(data, name)


def load_file(path: str | Path) -> tuple[ast.Survey, str]:
    """(survey, source) of a flow file; FlowError when it cannot be read or parsed."""
    source = read_source(path)
    return parse_source(source, str(path)), source
