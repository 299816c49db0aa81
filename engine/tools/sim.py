"""`canvass sim FILE`: the author plays the respondent, with a clock they can move.

Every outbound message is shown with its encoding and segment count. It needs no Redis: the
conversation lives in a MemoryStore and goes through the same engine.conversation calls as the
server, and the core's channel rules apply: over WhatsApp the respondent counts as having texted
just before the clock starts (so the 24-hour window is open for an invitation), and a reminder
after the window closed goes as the survey's template or not at all. With stdin not a terminal,
lines are read as a script and echoed.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import yaml

from dsl.diagnostics import unreadable
from dsl.durations import format_duration, parse_duration
from dsl.errors import FlowError
from dsl.load import read_source
from engine import conversation
from engine.events import NotInSurvey, ReminderNotSent
from engine.flow import load_flow
from engine.sms import segments
from engine.sms.phones import to_e164
from engine.tools.player import Message, Player, Template

HELP = """commands:
  :help            this text
  :state           current element, answers, embedded data, status, expiry time
  :answers         the answers so far
  :wait DURATION   advance the clock (30m, 49h, 2d), firing reminders and expiry
  :reset           start over with a new conversation
  :save FILE       write the conversation so far as a conversation test file
  :quit            leave
anything else is texted to the survey as the respondent"""


def _iso(t: float | None) -> str:
    return "-" if t is None else datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class Simulator:
    def __init__(self, path: str, fields: dict[str, str], phone: str, channel: str, start: str, out=print,
                 language: str | None = None):
        self.path = Path(path)
        self.flow = load_flow(path)
        if language is not None and language not in self.flow.languages:
            raise ValueError(f"--language {language}: the survey speaks {', '.join(self.flow.languages)}")
        self.fields, self.phone, self.channel, self.start = fields, phone, channel, start
        self.language = language
        self.out = out
        self.reset()

    def reset(self) -> None:
        now = time.time()
        self.player = Player(self.flow, self.channel, self.phone, now, last_inbound_at=now, language=self.language)
        self.transcript: list[dict] = []
        if self.start == "invite":
            self.show(self.player.invite(self.fields))
        elif self.flow.survey.access_code:
            self.out(f"(text the access code {self.access_code()} to start)")
        else:
            self.out("(this survey has no access_code: with --start inbound nothing will start it)")

    def access_code(self) -> str:
        """The access code that starts the survey in the chosen language (else the default's)."""
        survey = self.flow.survey
        return survey.translations.get("access_code", {}).get(self.language or "", survey.access_code)

    def show(self, messages: list[Message]) -> None:
        for event in self.player.events:
            if isinstance(event, ReminderNotSent):
                self.out(f"(reminder not sent: {event.reason})")
            elif isinstance(event, NotInSurvey) and not event.replied:
                self.out("(no reply: this number was told it is not in a survey less than a day ago)")
        for text in messages:
            if isinstance(text, Template):
                self.transcript.append({"expect_template": text.content_sid})
                self.out(f"< {text}")
                continue
            self.transcript.append({"expect": text})
            self.out("< " + text.replace("\n", "\n  "))
            if self.channel == "whatsapp":
                self.out("  [WhatsApp: no SMS segments]")
            else:
                n = segments.count(text)
                self.out(f"  [{n.encoding}, {n.segments} segment{'s' * (n.segments != 1)}, {n.units} units]")

    def handle(self, line: str) -> bool:
        """Act on one line of input; False when the author quits."""
        command, _, argument = line.strip().partition(" ")
        argument = argument.strip()
        if not line.startswith(":"):
            self.transcript.append({"send": line})
            self.show(self.player.send(line))
        elif command in (":quit", ":q", ":exit"):
            return False
        elif command == ":help":
            self.out(HELP)
        elif command == ":state":
            self.state()
        elif command == ":answers":
            self.out(yaml.safe_dump(self.answers(), allow_unicode=True, sort_keys=False).rstrip() or "{}")
        elif command == ":wait":
            seconds = parse_duration(argument)
            if seconds is None:
                self.out("usage: :wait DURATION  (e.g. :wait 49h)")
            else:
                self.transcript.append({"wait": format_duration(seconds)})
                self.show(self.player.wait(seconds))
                self.out(f"(the time is now {_iso(self.player.now)})")
        elif command == ":reset":
            self.reset()
        elif command == ":save":
            self.save(argument)
        else:
            self.out(f"unknown command {command}; :help lists them")
        return True

    def answers(self) -> dict:
        return self.player.last_session()[1]

    def state(self) -> None:
        respondent = self.player.respondent
        session = respondent.session
        lines = [f"clock:      {_iso(self.player.now)}",
                 f"respondent: {respondent.phone} over {respondent.channel}"
                 + (" (opted out)" if respondent.opted_out else "")]
        if len(self.flow.languages) > 1 or respondent.language:
            speaking = session.language if session is not None and session.language else respondent.language
            lines.append(f"language:   {speaking or self.flow.default_language}")
        if session is None:
            status = self.player.last_response["status"] if self.player.last_response else "no session yet"
            lines.append(f"status:     {status} (no open session)")
        else:
            lines += [f"status:     {session.status}",
                      f"element:    {session.state}",
                      f"expires at: {_iso(session.expires_at)}",
                      f"reminder:   {'sent' if session.reminded else _iso(session.remind_at)}"]
            lines.append("fields:     " + (", ".join(f"{k}={v}" for k, v in session.fields.items()) or "-"))
            if session.not_shown:
                lines.append("not shown:  " + ", ".join(session.not_shown))
        lines.append("answers:    " + (", ".join(f"{k}={_label(v)}" for k, v in self.answers().items()) or "-"))
        self.out("\n".join(lines))

    def save(self, target: str) -> None:
        if not target:
            self.out("usage: :save FILE")
            return
        path = Path(target)
        status, answers = self.player.last_session()[:2]
        contact = {"phone": self.phone, **self.fields}
        document = {"flow": _relative(self.path, path.parent), "start": self.start, "contact": contact}
        if self.channel != "sms":
            document["channel"] = self.channel
        if self.language is not None:
            document["language"] = self.language
        document["steps"] = self.transcript
        document["result"] = {"status": status, "answers": {k: _label(v) for k, v in answers.items()}}
        try:
            path.write_text(yaml.dump(document, Dumper=_Dumper, allow_unicode=True, sort_keys=False,
                                      width=1000), encoding="utf-8")
        except OSError as err:
            self.out(f"cannot write {path}: {err.strerror or err}")
            return
        self.out(f"saved {len(self.transcript)} steps to {path}")


class _Dumper(yaml.SafeDumper):
    """Multi-line messages as literal blocks, as a person would write them."""


_Dumper.add_representer(str, lambda dumper, text: dumper.represent_scalar(
    "tag:yaml.org,2002:str", text, style="|" if "\n" in text else None))


def _label(value):
    return value["label"] if isinstance(value, dict) and "label" in value else value


def _relative(flow: Path, directory: Path) -> str:
    return os.path.relpath(flow.resolve(), directory.resolve())


def _fields(pairs: list[str]) -> dict[str, str]:
    fields = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--field wants NAME=VALUE, not {pair!r}")
        fields[name.strip()] = value
    return fields


def run_sim(args) -> int:
    try:
        fields = _fields(args.field)
        phone = to_e164(args.phone)
    except ValueError as err:
        print(f"canvass sim: {err}", file=sys.stderr)
        return 2
    try:
        sim = Simulator(args.file, fields, phone, args.channel, args.start, language=args.language)
    except ValueError as err:
        print(f"canvass sim: {err}", file=sys.stderr)
        return 2
    except FlowError as err:
        source = _source_or_none(args.file)
        for diagnostic in err.diagnostics:
            print(diagnostic.render(source), file=sys.stderr)
        return 2 if unreadable(err.diagnostics) else 1
    except conversation.NotStartable as err:
        print(f"canvass sim: {err}", file=sys.stderr)
        return 1
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"{sim.flow.id} (version {sim.flow.version}) with {phone} over {args.channel}; :help for commands")
    while True:
        try:
            line = input("> ") if interactive else sys.stdin.readline()
        except EOFError:
            break
        if not interactive:
            if not line:
                break
            line = line.rstrip("\n")
            print(f"> {line}")
        if line.strip() and not sim.handle(line):
            break
    return 0


def _source_or_none(path: str) -> str | None:
    try:
        return read_source(path)
    except FlowError:
        return None
