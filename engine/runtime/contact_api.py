"""The admin API of contact lists: import a CSV body, list the lists, describe one, export
its contacts, delete a number. The work is engine.records.contacts'; these handlers turn
requests into its calls and its refusals into status codes."""

from __future__ import annotations

import asyncio
import logging
import tempfile

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from engine.records import contacts
from engine.records.contact_files import ContactFile, ContactFileError
from engine.runtime import contact_exports
from engine.runtime.appkeys import RESPONSES, error
from engine.runtime.untrusted import loggable
from engine.sms.phones import InvalidNumber, contact_number, country

log = logging.getLogger("canvass.contacts")

MAX_CONTACT_FILE = 1 << 30  # bytes: a million-row CSV is well under it
CSV_TYPES = ("text/csv", "application/csv", "text/plain")
SPOOL_CHUNK = 1 << 16


def _records_engine(request: web.Request):
    return request.app[RESPONSES].engine


def _records_unavailable(err: Exception) -> web.Response:
    log.warning("contact lists: the records database is unreachable: %s", type(err).__name__)
    return error(503, "records_unavailable", "the records database is not reachable, try again")


async def admin_list_import(request: web.Request) -> web.Response:
    """Import the CSV body into the list; the report as `canvass contacts import` prints it.
    The body is spooled to a temporary file (its encoding is checked over the whole file
    before a row is imported), then read a batch at a time."""
    if request.content_type not in CSV_TYPES:
        return error(415, "bad_content_type", "send the contact file as text/csv")
    try:
        name = contacts.list_name(request.match_info["list"])
        region = request.query.get("default_country")
        region = country(region) if region else None
    except contacts.ListNameError as err:
        return error(400, "bad_list_name", str(err))
    except InvalidNumber as err:
        return error(400, "bad_country", f"default_country: {err}")
    with tempfile.TemporaryFile() as spooled:
        size = 0
        async for chunk in request.content.iter_chunked(SPOOL_CHUNK):
            size += len(chunk)
            if size > MAX_CONTACT_FILE:
                return error(413, "too_large", f"a contact file may hold at most {MAX_CONTACT_FILE} "
                                                "bytes: split it and import the parts into one list")
            spooled.write(chunk)
        spooled.seek(0)
        try:
            opened = await asyncio.to_thread(ContactFile, spooled, request.query.get("phone_column"), region)
            report = await contacts.import_file(_records_engine(request), name, opened)
        except ContactFileError as err:
            extra = {"columns": err.columns} if err.columns is not None else {}
            return error(422, err.reason, err.message, **extra)
        except (SQLAlchemyError, OSError) as err:
            return _records_unavailable(err)
    return web.json_response(report.to_json())


async def admin_lists(request: web.Request) -> web.Response:
    try:
        return web.json_response({"lists": await contacts.all_lists(_records_engine(request))})
    except (SQLAlchemyError, OSError) as err:
        return _records_unavailable(err)


async def admin_list(request: web.Request) -> web.Response:
    try:
        return web.json_response(await contacts.describe(_records_engine(request),
                                                         request.match_info["list"]))
    except contacts.UnknownList as err:
        return error(404, "unknown_list", str(err))
    except (SQLAlchemyError, OSError) as err:
        return _records_unavailable(err)


async def admin_list_contacts(request: web.Request) -> web.StreamResponse:
    name, form = request.match_info["list"], request.query.get("format", "jsonl")
    if form not in ("jsonl", "csv"):
        return error(400, "bad_format", "format must be jsonl or csv")
    engine = _records_engine(request)
    try:
        fields = await contacts.field_names(engine, name)
    except contacts.UnknownList as err:
        return error(404, "unknown_list", str(err))
    except (SQLAlchemyError, OSError) as err:
        return _records_unavailable(err)
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8" if form == "csv" else "application/x-ndjson; charset=utf-8",
        "Content-Disposition": f'attachment; filename="contacts.{form}"'})
    await response.prepare(request)
    try:
        if form == "csv":
            await response.write(contact_exports.csv_header(fields).encode())
        async for contact in contacts.contacts_of(engine, name):
            line = contact_exports.csv_row(fields, contact) if form == "csv" else contact_exports.jsonl_row(contact)
            await response.write(line.encode())
    except (SQLAlchemyError, OSError, contacts.UnknownList) as err:
        log.warning("export of the contact list %s cut short: %s", loggable(name), type(err).__name__)
        request.transport.abort()  # the status went out: a cut body, never a short file taken whole
        return response
    await response.write_eof()
    return response


async def admin_list_delete_contact(request: web.Request) -> web.Response:
    name = request.match_info["list"]
    try:
        phone = contact_number(request.match_info["number"]).e164
    except InvalidNumber as err:
        return error(400, "bad_number", str(err))
    try:
        deleted = await contacts.delete_contact(_records_engine(request), name, phone)
    except contacts.UnknownList as err:
        return error(404, "unknown_list", str(err))
    except (SQLAlchemyError, OSError) as err:
        return _records_unavailable(err)
    if not deleted:
        return error(404, "unknown_contact", f"{phone} is not on the list '{name}'")
    return web.json_response({"deleted": phone, "list": name})


def add_contact_routes(app: web.Application) -> None:
    app.router.add_get("/admin/lists", admin_lists)
    app.router.add_get("/admin/lists/{list}", admin_list)
    app.router.add_post("/admin/lists/{list}/import", admin_list_import)
    app.router.add_get("/admin/lists/{list}/contacts", admin_list_contacts)
    app.router.add_delete("/admin/lists/{list}/contacts/{number}", admin_list_delete_contact)
