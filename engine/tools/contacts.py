"""`canvass contacts`: contact lists in the records database (DATABASE_URL, or var/canvass.db).

    canvass contacts import FILE.csv --list NAME [--phone-column COL] [--default-country CC]
    canvass contacts lists
    canvass contacts show NAME
    canvass contacts export NAME [--format csv|jsonl]
    canvass contacts delete NAME NUMBER

Each prints JSON (an export: the file) on stdout, as the admin API answers; errors go to
stderr. Exit codes: 0 done (an import with rejected rows too: the report lists them),
1 the database is unreachable or behind, 2 the request itself is wrong (no such file, list
or number; a file that cannot be imported).
"""

from __future__ import annotations

import json
import sys

from engine.records import contacts, migrate
from engine.records.contact_files import ContactFile, ContactFileError
from engine.records.database import connect, redacted
from engine.runtime import contact_exports
from engine.sms.phones import InvalidNumber, contact_number, country
from engine.tools.records_command import Refused, run_on_records


def run_contacts(args) -> int:
    return run_on_records("contacts", args.action, lambda url: _run(args, url))


async def _run(args, url: str) -> int:
    engine = connect(url)
    try:
        await migrate.check(engine, redacted(url))
        return await ACTIONS[args.action](engine, args)
    except (contacts.UnknownList, contacts.ListNameError) as err:
        raise Refused(str(err)) from None
    finally:
        await engine.dispose()


def _print_json(value) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


async def _import(engine, args) -> int:
    name = contacts.list_name(args.list)
    try:
        region = country(args.default_country) if args.default_country else None
    except InvalidNumber as err:
        raise Refused(f"--default-country: {err}") from None
    try:
        with open(args.file, "rb") as binary:
            opened = ContactFile(binary, args.phone_column, region)
            report = await contacts.import_file(engine, name, opened)
    except FileNotFoundError:
        raise Refused(f"{args.file}: no such file") from None
    except IsADirectoryError:
        raise Refused(f"{args.file}: is a folder, not a CSV file") from None
    except ContactFileError as err:
        raise Refused(f"{args.file}: {err}") from None
    _print_json(report.to_json())
    print(f"{name}: {report.imported} imported, {report.updated} updated, {report.unchanged} "
          f"unchanged, {len(report.rejected)} rejected, {len(report.warnings)} warning(s)",
          file=sys.stderr)
    return 0


async def _lists(engine, args) -> int:
    _print_json(await contacts.all_lists(engine))
    return 0


async def _show(engine, args) -> int:
    _print_json(await contacts.describe(engine, args.list))
    return 0


async def _export(engine, args) -> int:
    out = sys.stdout
    if args.format == "csv":
        fields = await contacts.field_names(engine, args.list)
        out.write(contact_exports.csv_header(fields))
        async for contact in contacts.contacts_of(engine, args.list):
            out.write(contact_exports.csv_row(fields, contact))
    else:
        async for contact in contacts.contacts_of(engine, args.list):
            out.write(contact_exports.jsonl_row(contact))
    out.flush()
    return 0


async def _delete(engine, args) -> int:
    try:
        phone = contact_number(args.number).e164
    except InvalidNumber as err:
        raise Refused(f"'{args.number}': {err}") from None
    if not await contacts.delete_contact(engine, args.list, phone):
        raise Refused(f"{phone} is not on the list '{args.list}'")
    _print_json({"deleted": phone, "list": args.list})
    return 0


ACTIONS = {"import": _import, "lists": _lists, "show": _show, "export": _export, "delete": _delete}

