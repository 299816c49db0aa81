"""The `canvass` command. Each subcommand's work lives in the module that owns the concept."""

from __future__ import annotations

import argparse
import sys


def _check(args) -> int:
    from engine.sms.compat import run_check

    return run_check(args.files, as_json=args.json, assume_pipe_length=args.pipe_length)


def _convert(args) -> int:
    from dsl.convert import run_convert

    return run_convert(args.file, args.to)


def _segments(args) -> int:
    from engine.sms.segments import run_segments

    return run_segments(" ".join(args.text), smart=args.smart, as_json=args.json)


def _graph(args) -> int:
    from dsl.graph import run_graph
    from engine.sms.compat import check_source

    return run_graph(args.file, svg=args.svg, check=lambda survey, source: check_source(source, args.file).diagnostics)


def _sim(args) -> int:
    from engine.tools.sim import run_sim

    return run_sim(args)


def _test(args) -> int:
    from engine.tools.conversation_test import run_tests

    if args.channel == "own":
        return run_tests(args.files, verbose=args.verbose)
    from engine.tools.local_redis import RedisMissing
    from engine.tools.web_conversation import WebPlayer
    from server import create_app

    try:
        with WebPlayer(create_app) as web:
            return run_tests(args.files, verbose=args.verbose, web=web, own_channel=args.channel == "all")
    except RedisMissing as err:
        print(f"canvass test --channel {args.channel}: {err}", file=sys.stderr)
        return 2


def _serve(args) -> int:
    from server import run_server

    return run_server(args)


def _db(args) -> int:
    from engine.records.commands import run_db

    return run_db(args)


def _export(args) -> int:
    from engine.tools.reports import run_export

    return run_export(args)


def _report(args) -> int:
    from engine.tools.reports import run_report

    return run_report(args)
def _contacts(args) -> int:
    from engine.tools.contacts import run_contacts

    return run_contacts(args)


def _credits(args) -> int:
    from engine.tools.credits import run_credits

    return run_credits(args)


def _distribute(args) -> int:
    from engine.tools.distributions import run_distribute

    return run_distribute(args)


def _distributions(args) -> int:
    from engine.tools.distributions import run_distributions

    return run_distributions(args)


def _survey(args) -> int:
    from engine.tools.surveys import run_survey

    return run_survey(args)


def _phone(args) -> int:
    from engine.tools.phone import run_phone

    return run_phone(args)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="canvass", description="Surveys as conversations over SMS and WhatsApp.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="check flow files (or folders of them, as the server loads them) and "
                       "report SMS compatibility and cost")
    p.add_argument("files", nargs="+", metavar="FILE|DIR")
    p.add_argument("--json", action="store_true", help="print diagnostics and summaries as JSON")
    p.add_argument("--pipe-length", type=int, default=10, metavar="N",
                   help="assumed length of piped text when counting segments (default 10)")
    p.set_defaults(func=_check)

    p = sub.add_parser("convert", help="print a flow file in the other form")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--to", choices=["yaml", "text"], required=True)
    p.set_defaults(func=_convert)

    p = sub.add_parser("segments", help="count SMS segments as Twilio does")
    p.add_argument("text", nargs="+", metavar="TEXT")
    p.add_argument("--smart", action="store_true", help="apply Twilio's Smart Encoding first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_segments)

    p = sub.add_parser("graph", help="print the flow as a Mermaid flowchart")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--svg", metavar="PATH", help="also write an SVG (Graphviz)")
    p.set_defaults(func=_graph)

    p = sub.add_parser("sim", help="play the respondent in a simulated conversation")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--field", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--phone", default="+15555550100")
    p.add_argument("--channel", choices=["sms", "whatsapp"], default="sms")
    p.add_argument("--start", choices=["invite", "inbound"], default="invite")
    p.add_argument("--language", metavar="CODE",
                   help="the respondent's language (one of the survey's; default: as the contact's "
                        "language field or the access code says, else the survey's default)")
    p.set_defaults(func=_sim)

    p = sub.add_parser("test", help="run conversation test files")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--channel", choices=["own", "web", "all"], default="own",
                   help="own: each file's channel (sms or whatsapp); web: through the survey's web pages "
                        "(a private redis-server, started for the run); all: both")
    p.add_argument("-v", "--verbose", action="store_true")
    p.set_defaults(func=_test)

    p = sub.add_parser("serve", help="serve the Twilio webhooks and the admin API")
    p.add_argument("--flows", default="surveys", metavar="DIR")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--watch", action="store_true", help="reload flows when their files change")
    p.add_argument("--insecure", action="store_true",
                   help="run without TWILIO_AUTH_TOKEN (local development only)")
    p.add_argument("--access-log", action="store_true",
                   help="log every HTTP request (off by default: it costs a tenth of a webhook's time)")
    p.add_argument("--workers", type=_positive, default=1, metavar="N",
                   help="server processes sharing the port, e.g. one per core (default 1)")
    p.add_argument("--credits", metavar="PATH", help="price messages with this credits table (a CSV "
                   "file), or `shipped` (engine/sms/credits.csv); default CANVASS_CREDITS, else none: "
                   "no credits")
    p.add_argument("--contact-frequency", metavar="N/PERIOD",
                   help="at most N invitations per number in PERIOD across distributions, e.g. 1/7d "
                        "(default: CANVASS_CONTACT_FREQUENCY, else no limit)")
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set for each worker
    p.set_defaults(func=_serve)

    p = sub.add_parser("db", help="the records database: apply migrations, show the schema's revision")
    p.add_argument("action", choices=["upgrade", "status"],
                   help="upgrade: apply the migrations; status: say whether the schema is current")
    p.set_defaults(func=_db)

    p = sub.add_parser("export", help="write a survey's responses as CSV or JSON Lines "
                       "(DATABASE_URL, REDIS_URL)")
    p.add_argument("survey", metavar="SURVEY")
    p.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    p.add_argument("--since", metavar="T", help="only responses ended at or after T (ISO 8601, UTC if no zone)")
    p.add_argument("--status", metavar="S", help="only responses of this status (complete, expired, ...)")
    p.add_argument("--output", metavar="FILE", help="write to FILE (default: standard output)")
    p.add_argument("--include-open", action="store_true", help="also the responses still in progress (status open)")
    p.add_argument("--bom", action="store_true", help="start with a UTF-8 byte order mark (for Excel)")
    p.add_argument("--preview", action="store_true", help="also the responses of previews")
    p.add_argument("--hash-phones", action="store_true",
                   help="replace phone numbers by their keyed hash (the key in CANVASS_EXPORT_KEY)")
    p.set_defaults(func=_export)

    p = sub.add_parser("report", help="a survey's figures: statuses, completion, NPS, drop-off per question")
    p.add_argument("survey", metavar="SURVEY")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--preview", action="store_true", help="also count the responses of previews")
    p.set_defaults(func=_report)
    p = sub.add_parser("contacts", help="contact lists: import a CSV, list, show, export, delete")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("import", help="import a CSV file into a list (made when new)")
    a.add_argument("file", metavar="FILE.csv")
    a.add_argument("--list", required=True, metavar="NAME")
    a.add_argument("--phone-column", metavar="COL", help="the phone column (default: detected "
                   "from its name: Phone, Phone Number, Mobile, Cell, Telephone, Number...)")
    a.add_argument("--default-country", metavar="CC", help="the country (US, GB...) of numbers "
                   "written without their country code")
    actions.add_parser("lists", help="every list, with its number of contacts")
    a = actions.add_parser("show", help="a list's figures: contacts, fields, opted out")
    a.add_argument("list", metavar="NAME")
    a = actions.add_parser("export", help="print a list's contacts as CSV or JSON Lines")
    a.add_argument("list", metavar="NAME")
    a.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    a = actions.add_parser("delete", help="delete a number from a list")
    a.add_argument("list", metavar="NAME")
    a.add_argument("number", metavar="NUMBER")
    p.set_defaults(func=_contacts)

    p = sub.add_parser("credits", help="credits: add to the balance, show it, report what messages used")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("add", help="add N credits to the balance (a negative N takes them back)")
    a.add_argument("amount", metavar="N")
    a.add_argument("--reason", metavar="TEXT", help="why, kept in the ledger")
    a.add_argument("--by", metavar="NAME", help="who (default: your login name)")
    actions.add_parser("show", help="the balance: credits added, used and left")
    a = actions.add_parser("report", help="messages, segments and credits used, summed by what --by names")
    a.add_argument("--by", default="", metavar="survey,distribution,country,direction,day")
    a.add_argument("--since", metavar="DAY", help="from this day (YYYY-MM-DD, UTC), included")
    a.add_argument("--until", metavar="DAY", help="to this day (YYYY-MM-DD, UTC), included")
    a.add_argument("--format", choices=["table", "csv", "json"], default="table")
    p.set_defaults(func=_credits)
    server_help = "the server's address (default: CANVASS_SERVER, else http://127.0.0.1:8080)"
    p = sub.add_parser("distribute", help="send a survey to a contact list (through the server's admin API)")
    p.add_argument("--survey", required=True, metavar="S")
    p.add_argument("--list", required=True, metavar="L")
    p.add_argument("--name", metavar="N", help="the distribution's name (default: SURVEY to LIST)")
    p.add_argument("--channel", choices=["sms", "whatsapp"], default="sms")
    p.add_argument("--at", metavar="ISO", help="when to send, ISO 8601 with its offset (default: now)")
    p.add_argument("--quiet-hours", metavar="FROM-TO",
                   help="send only between these local times of the recipient, e.g. 09:00-20:00")
    p.add_argument("--mode", choices=["2way", "link"], default="2way",
                   help="2way: the survey as a text conversation (default); link: an invitation "
                        "carrying each recipient's link to the web survey")
    p.add_argument("--message", metavar="TEXT",
                   help="a link distribution's invitation, with ${l://SurveyLink} where the link goes "
                        "(${e://Field/NAME} and ${l://OptOutURL} may be piped too)")
    p.add_argument("--sender", metavar="FROM",
                   help="a link distribution's sender: a number, short code, messaging service (MG...) "
                        "or alphanumeric ID (default: the survey's)")
    p.add_argument("--dry-run", action="store_true", help="print the estimate only; create nothing")
    p.add_argument("--server", metavar="URL", help=server_help)
    p.set_defaults(func=_distribute)

    p = sub.add_parser("distributions", help="distributions: list, show (--watch), cancel, recipients")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("list", help="every distribution, newest first")
    a.add_argument("--server", metavar="URL", help=server_help)
    a = actions.add_parser("show", help="a distribution's status, counts and estimate")
    a.add_argument("id", metavar="ID")
    a.add_argument("--watch", action="store_true", help="a progress bar, redrawn every second until it ends")
    a.add_argument("--server", metavar="URL", help=server_help)
    a = actions.add_parser("cancel", help="cancel a scheduled or sending distribution")
    a.add_argument("id", metavar="ID")
    a.add_argument("--server", metavar="URL", help=server_help)
    a = actions.add_parser("recipients", help="print each recipient's state, message SID and error code")
    a.add_argument("id", metavar="ID")
    a.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    a.add_argument("--server", metavar="URL", help=server_help)
    p.set_defaults(func=_distributions)

    p = sub.add_parser("survey", help="a survey's status: active, paused or closed (through the server's admin API)")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("status", help="show the survey's status, or set it: paused and closed take no "
                                          "new respondents, closed takes no more answers")
    a.add_argument("id", metavar="ID")
    a.add_argument("status", nargs="?", choices=["active", "paused", "closed"])
    a.add_argument("--server", metavar="URL", help=server_help)
    p.set_defaults(func=_survey)

    p = sub.add_parser("phone", help="text a running server as a respondent would")
    p.add_argument("--server", metavar="URL", help=server_help + "; with Twilio credentials, its "
                   "PUBLIC_BASE_URL (webhook signatures cover the URL)")
    p.add_argument("--from", dest="from_", required=True, metavar="NUMBER",
                   help="the respondent's number (E.164, e.g. +15551234567; whatsapp:+1... for WhatsApp)")
    p.add_argument("--to", default="+15555550000", metavar="NUMBER",
                   help="the survey's number the messages are texted to (default +15555550000)")
    p.set_defaults(func=_phone)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
