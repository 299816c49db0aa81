"""A survey's responses as CSV or JSON Lines, streamed in constant memory: the columns come
from the flow versions (engine.records.columns), so rows are written as they are read, a
batch at a time, however many there are.

The options: responses ended since a time, of one status, also those still in progress (open
sessions, read from Redis, status `open`), a UTF-8 byte order mark (Excel reads the file as
UTF-8 only with it), phone numbers replaced by a keyed hash (the key from EXPORT_KEY_VARIABLE
or the caller).

CSV cells never start a formula: a text that a spreadsheet would run (=, +, -, @, tab, CR at
its start) gets a leading apostrophe, unless it is a plain number. JSON Lines are one record a
line for every reader (U+2028, U+2029, NEL and lone surrogates escaped).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from dsl.errors import FlowError
from engine.flow import Flow, flow_from_source
from engine.records.columns import Exported, PhoneHash, Shape, iso_ms
from engine.records.contact_files import FORMULA_STARTS
from engine.records.reading import Filter, Responses, in_progress
from engine.redis.store import Store
from engine.session import STATUSES

FORMS = ("csv", "jsonl")
EXPORT_KEY_VARIABLE = "CANVASS_EXPORT_KEY"
BOM = "\ufeff"
CHUNK = 64 * 1024  # characters of CSV gathered before they are handed on
PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")  # +15551234567 or -3 is data, not a formula

# Valid inside a JSON string, but line breaks to many readers (JavaScript before ES2019,
# str.splitlines, editors): escaped, so each record is exactly one line for every reader.
# Lone surrogates too: they could not be written as UTF-8.
LINE_BREAKING = re.compile("[\u2028\u2029\x85\ud800-\udfff]")

# (survey, version) -> its flow, or None when it cannot be had; version None: the live one
FlowOf = Callable[[str, str | None], Awaitable[Flow | None]]


class ExportError(ValueError):
    """An option an export cannot take; the message says what it takes."""


@dataclass(frozen=True)
class ExportOptions:
    form: str = "jsonl"
    since: datetime | None = None
    status: str | None = None
    include_open: bool = False
    bom: bool = False
    hash_key: str | None = None  # replace phone numbers by their HMAC under this key
    previews: bool = False  # also the responses of previews

    def __post_init__(self):
        if self.form not in FORMS:
            raise ExportError("format must be csv or jsonl")
        if self.status is not None and self.status not in STATUSES:
            raise ExportError(f"status must be one of {', '.join(STATUSES)}")
        if self.hash_key is not None:
            try:
                PhoneHash(self.hash_key)
            except ValueError as err:
                raise ExportError(str(err)) from None


def parse_since(text: str) -> datetime:
    """An ISO 8601 date or time (without a zone: UTC) as aware UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ExportError(f"since '{text}' is not an ISO 8601 date or time, e.g. 2024-05-01 "
                          "or 2024-05-01T09:00:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def hash_key_from_env() -> str:
    key = os.environ.get(EXPORT_KEY_VARIABLE, "")
    if not key:
        raise ExportError(f"hashing phone numbers needs a key: set {EXPORT_KEY_VARIABLE}")
    return key


FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False, "": False}
QUERY_OPTIONS = ("format", "since", "status", "include_open", "bom", "hash_phones", "preview")


def options_from_query(query: Mapping[str, str]) -> ExportOptions:
    """The options of GET /admin/responses/{survey}: format, since, status, and the flags
    include_open, bom, hash_phones, preview (1/0, true/false, yes/no); hash_phones takes its key from
    EXPORT_KEY_VARIABLE."""
    unknown = sorted(set(query) - set(QUERY_OPTIONS))
    if unknown:
        raise ExportError(f"unknown option {unknown[0]}: the options are {', '.join(QUERY_OPTIONS)}")
    flags = {}
    for name in ("include_open", "bom", "hash_phones", "preview"):
        value = query.get(name, "").strip().lower()
        if value not in FLAGS:
            raise ExportError(f"{name} must be 1 or 0 (true or false), not '{query[name]}'")
        flags[name] = FLAGS[value]
    since = query.get("since")
    return ExportOptions(
        form=query.get("format", "jsonl"), since=parse_since(since) if since else None,
        status=query.get("status") or None, include_open=flags["include_open"], bom=flags["bom"],
        hash_key=hash_key_from_env() if flags["hash_phones"] else None, previews=flags["preview"])


def times_as_iso(value):
    """A JSON-ready value with every time (a key `at` or ending in `_at`, in Unix seconds) as
    ISO 8601 UTC with milliseconds: what the admin session view shows."""
    if isinstance(value, dict):
        return {key: _times(item) if key == "at" or key.endswith("_at") else times_as_iso(item)
                for key, item in value.items()}
    if isinstance(value, list):
        return [times_as_iso(item) for item in value]
    return value


def _times(value):
    """A time, or {name: time} (when each question was answered)."""
    if isinstance(value, dict):
        return {key: _times(item) for key, item in value.items()}
    return iso_ms(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


async def export(responses: Responses, survey: str, flow_of: FlowOf,
                 options: ExportOptions) -> AsyncIterator[str]:
    """The export's text, in pieces of up to about CHUNK characters."""
    shape = await _shape(responses, survey, flow_of, options)
    exported = Exported(shape, PhoneHash(options.hash_key) if options.hash_key else None)
    only = Filter(options.since, options.status, previews=options.previews)
    records = _records(responses, survey, flow_of, options, only)
    if options.form == "jsonl":
        if options.bom:
            yield BOM
        async for record in records:
            yield jsonl_line(exported.record(record))
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write(BOM if options.bom else "")
    writer.writerow(exported.header())
    async for record in records:
        writer.writerow([cell(value) for value in exported.row(exported.record(record))])
        if buffer.tell() >= CHUNK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


async def _records(responses: Responses, survey: str, flow_of: FlowOf, options: ExportOptions,
                   only: Filter) -> AsyncIterator[dict]:
    async for _, record in responses.responses(survey, only=only):
        yield record
    if options.include_open:
        async for record in in_progress(responses.store, survey, lambda version: flow_of(survey, version)):
            if only.matches(record):
                yield record


async def _shape(responses: Responses, survey: str, flow_of: FlowOf, options: ExportOptions) -> Shape:
    """The columns: the live flow's, then those of each version the responses ran on."""
    shape = Shape()
    live = await flow_of(survey, None)
    if live is not None:
        shape.add_flow(live)
    versions = await responses.versions(survey)
    if options.include_open and options.form == "csv":
        async for record in in_progress(responses.store, survey, _no_flow):
            versions.add(record["version"])
    unknown = set()
    for version in sorted(versions - {live.version if live else None}):
        flow = await flow_of(survey, version)
        if flow is not None:
            shape.add_flow(flow)
        else:
            unknown.add(version)
    if unknown and options.form == "csv":  # no flow says their questions: their records do
        async for _, record in responses.responses(survey, only=Filter(versions=frozenset(unknown), previews=True)):
            shape.add_record(record)
    return shape


async def _no_flow(_version: str) -> None:
    return None


class StoredFlows:
    """A FlowOf: the flows a process holds (`held(survey, version)`, e.g. the registry's get),
    else the versions stored in Redis, compiled once per export. Without held flows the live
    version is the one the fleet announced."""

    def __init__(self, store: Store, held: Callable[[str, str | None], Flow | None] | None = None):
        self.store, self.held = store, held
        self.compiled: dict[tuple[str, str], Flow | None] = {}

    async def __call__(self, survey: str, version: str | None) -> Flow | None:
        flow = self.held(survey, version) if self.held is not None else None
        if flow is not None or (version is None and self.held is not None):
            return flow
        if version is None:
            version = (await self.store.live_flows())[1].get(survey)
            if version is None:
                return None
        if (survey, version) not in self.compiled:
            stored = await self.store.load_flow(survey, version)
            try:
                flow = flow_from_source(stored["source"], stored["form"]) if stored else None
            except FlowError:  # stored by a version of Canvass that read it differently
                flow = None
            self.compiled[survey, version] = flow
        return self.compiled[survey, version]


def jsonl_line(record: dict) -> str:
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
    if LINE_BREAKING.search(line):
        line = LINE_BREAKING.sub(lambda found: f"\\u{ord(found.group()):04x}", line)
    return line + "\n"


def cell(value) -> str:
    """A CSV cell that no spreadsheet runs as a formula."""
    if value is None:
        return ""
    if value.__class__ is int:
        return str(value)
    text = str(value)
    if text.startswith(FORMULA_STARTS) and not PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text
