"""`canvass test FILE...`: play scripted conversations against a flow with a fake clock.

A test file (YAML):

    flow: ../../surveys/retail-nps.yaml   # the flow, relative to this file (required)
    start: invite        # invite (default): the survey texts first; inbound: the respondent does
    channel: sms         # sms (default) | whatsapp
    language: es         # optional: the respondent's language, one of the survey's (an invitation
                         # opens in it); default: as the contact's language field or the access
                         # code texted says, else the survey's default
    contact: {phone: "+15551234567", FirstName: Ana}   # phone defaults to +15555550100;
                         # other keys are contact fields (used by `start: invite` only: a
                         # respondent who texts first is unknown to Canvass)
    last_message: 23h    # optional: the respondent last texted this long before the clock
                         # starts, or `never`; default: just then. It opens WhatsApp's 24-hour
                         # window, outside which a start or reminder goes as the survey's
                         # whatsapp_template or not at all (engine.policy)
    start_refused: whatsapp_window   # optional: the invitation must be refused for this reason
                         # (whatsapp_window, opted_out, open_session); the steps follow it
    steps:
      - expect: "Hi Ana! ..."     # the next message sent, exactly
      - expect_template: HX...    # the next message is the WhatsApp template with this ContentSid
      - send: "4"                 # the respondent texts (e.g. the access code with start: inbound)
      - expect_match: "reason"    # a regular expression searched in the next message
      - wait: 49h                 # advance the clock, firing due reminders and expiry on time
    result:              # checked against the last session (optional)
      status: expired    # open while it is still open; none if no session ever started
      answers: {recommend: 4, reason: null}   # listed ones only; null = not answered;
                         # a choice matches its label (or its code), NPS and text their text,
                         # numbers as numbers (4, "4" and 4.0 alike); an id that is not a
                         # question of the flow is an error
      fields: {segment: other}                 # embedded data / contact fields
      not_shown: [reason]

Every message must be taken by an expect/expect_match before the next send or wait, or the end.
Values are compared as written in the file (`send: yes` sends "yes"); a block scalar (| or >)
loses its final line break. The clock starts at 2024-01-01T09:00:00Z. A directory argument means
the *.yaml files directly in it. Exit status: 0 when no file fails and one passed, else 1.
`--channel web` plays the files through the survey's web pages (engine.tools.web_conversation).
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dsl.durations import parse_duration
from dsl.errors import FlowError, suggest
from dsl.expr import number
from dsl.load import read_source
from engine.conversation import NotStartable
from engine.flow import Flow, load_flow
from engine.tools.player import Message, Player, Template

START_TIME = 1704099600.0  # 2024-01-01T09:00:00Z
DEFAULT_PHONE = "+15555550100"
_KEYS = ("flow", "start", "channel", "language", "contact", "last_message", "start_refused", "steps", "result")
_STEP_KINDS = ("send", "expect", "expect_match", "expect_template", "wait")
_RESULT_KEYS = ("status", "answers", "fields", "not_shown")
_NULL = "tag:yaml.org,2002:null"


class ScriptError(Exception):
    """A malformed test file, with the line it is about (0 when it is about the whole file)."""

    def __init__(self, message: str, line: int = 0):
        super().__init__(message)
        self.line = line


@dataclass
class Action:
    number: int  # 1-based, as failures name it
    line: int
    kind: str
    text: str
    seconds: int = 0
    pattern: re.Pattern | None = None


@dataclass
class Script:
    path: Path
    flow: Path
    flow_as_written: str
    flow_line: int
    start: str = "invite"
    channel: str = "sms"
    language: tuple[str, int] | None = None  # (code, line)
    phone: str = DEFAULT_PHONE
    contact_fields: dict[str, str] = field(default_factory=dict)
    last_message: int | None = 0  # seconds before the start the respondent last texted; None: never
    start_refused: tuple[str, int] | None = None  # (reason, line)
    steps: list[Action] = field(default_factory=list)
    expected_status: tuple[str, int] | None = None  # (status, line)
    expected_answers: list[tuple[str, yaml.ScalarNode]] = field(default_factory=list)
    expected_fields: list[tuple[str, yaml.ScalarNode]] = field(default_factory=list)
    expected_not_shown: tuple[list[str], int] | None = None  # (question ids, line)


# ---------------------------------------------------------------- reading


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _fail(node: yaml.Node, message: str):
    raise ScriptError(message, _line(node))


def _mapping(node: yaml.Node, allowed, where: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        _fail(node, f"{where} must be a mapping")
    entries = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            _fail(key, f"a key in {where} must be a plain word")
        if allowed is not None and key.value not in allowed:
            hint = ("; this looks like a flow file: `canvass check` checks a flow, `canvass test` "
                    "plays conversation test files against one") if key.value == "survey" else ""
            _fail(key, f"unknown key '{key.value}' in {where} (allowed: {', '.join(allowed)}){hint}")
        if key.value in entries:
            _fail(key, f"duplicate key '{key.value}' in {where}")
        entries[key.value] = (key, value)
    return entries


def _text(node: yaml.Node, where: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.tag == _NULL:
        _fail(node, f"{where} must be text")
    text = node.value
    return text[:-1] if node.style in ("|", ">") and text.endswith("\n") else text


def _choice(entries, key: str, options: tuple[str, ...], default: str) -> str:
    if key not in entries:
        return default
    value = _text(entries[key][1], f"'{key}'")
    if value not in options:
        _fail(entries[key][1], f"'{key}' must be one of: {', '.join(options)}")
    return value


def _action(number: int, node: yaml.Node) -> Action:
    entries = _mapping(node, _STEP_KINDS, f"step {number}")
    if len(entries) != 1:
        _fail(node, f"step {number} must have exactly one of: {', '.join(_STEP_KINDS)}")
    kind, (_, value) = next(iter(entries.items()))
    action = Action(number, _line(node), kind, _text(value, f"'{kind}' in step {number}"))
    if kind == "wait":
        seconds = parse_duration(action.text)
        if not seconds:
            _fail(value, f"'{action.text}' is not a duration (write e.g. 30m, 49h, 2d)")
        action.seconds = seconds
    elif kind == "expect_match":
        try:
            action.pattern = re.compile(action.text)
        except re.error as err:
            _fail(value, f"bad regular expression {action.text!r}: {err}")
    return action


def read_script(path: Path) -> Script:
    """A test file as a Script; ScriptError (with a line) when it is malformed."""
    try:
        root = yaml.compose(_read(path), Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        raise ScriptError(f"YAML syntax error: {err.problem}", mark.line + 1 if mark else 1) from None
    except yaml.YAMLError as err:
        raise ScriptError(f"YAML error: {err}") from None
    if root is None:
        raise ScriptError("the file is empty", 1)
    entries = _mapping(root, _KEYS, "the test file")
    if "flow" not in entries:
        _fail(root, "the test file has no 'flow' (the flow file to test, relative to this file)")
    written = _text(entries["flow"][1], "'flow'")
    script = Script(path, path.parent / written, written, _line(entries["flow"][1]))
    script.start = _choice(entries, "start", ("invite", "inbound"), "invite")
    script.channel = _choice(entries, "channel", ("sms", "whatsapp"), "sms")
    if "language" in entries:
        node = entries["language"][1]
        script.language = (_text(node, "'language'"), _line(node))
    if "contact" in entries:
        for name, (_, value) in _mapping(entries["contact"][1], None, "'contact'").items():
            if name == "phone":
                script.phone = _text(value, "'phone'")
            else:
                script.contact_fields[name] = _text(value, f"contact field '{name}'")
    if "last_message" in entries:
        node = entries["last_message"][1]
        written = _text(node, "'last_message'")
        script.last_message = None if written == "never" else parse_duration(written)
        if written != "never" and script.last_message is None:
            _fail(node, f"'last_message' must be a duration (e.g. 23h, 2d) or never, not '{written}'")
    if "start_refused" in entries:
        node = entries["start_refused"][1]
        script.start_refused = (_text(node, "'start_refused'"), _line(node))
    if "steps" in entries:
        steps = entries["steps"][1]
        if not isinstance(steps, yaml.SequenceNode):
            _fail(steps, "'steps' must be a list")
        script.steps = [_action(n, item) for n, item in enumerate(steps.value, start=1)]
    if "result" in entries:
        _read_result(script, _mapping(entries["result"][1], _RESULT_KEYS, "'result'"))
    return script


def _expected_values(node: yaml.Node, where: str) -> list[tuple[str, yaml.ScalarNode]]:
    out = []
    for name, (_, value) in _mapping(node, None, where).items():
        if not isinstance(value, yaml.ScalarNode):
            _fail(value, f"the expected value of '{name}' in {where} must be text, a number or null")
        out.append((name, value))
    return out


def _read_result(script: Script, result: dict[str, tuple[yaml.Node, yaml.Node]]) -> None:
    if "status" in result:
        node = result["status"][1]
        script.expected_status = (_text(node, "'status'"), _line(node))
    if "answers" in result:
        script.expected_answers = _expected_values(result["answers"][1], "'answers'")
    if "fields" in result:
        script.expected_fields = _expected_values(result["fields"][1], "'fields'")
    if "not_shown" in result:
        node = result["not_shown"][1]
        if not isinstance(node, yaml.SequenceNode):
            _fail(node, "'not_shown' must be a list of question ids")
        script.expected_not_shown = ([_text(item, "a question id") for item in node.value], _line(node))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ScriptError(f"cannot read the file: {getattr(err, 'strerror', None) or err}") from None


# ---------------------------------------------------------------- running


@dataclass
class Played:
    """What playing a file over one channel found: the failures (none: it passed), the steps
    that do not apply to that channel (each "where: why"), or why the whole file does not."""

    failures: list[str]
    skipped: list[str] = field(default_factory=list)
    not_applicable: str | None = None


def _show(text: Message | None) -> str:
    if isinstance(text, Template):
        return f"(WhatsApp template {text.content_sid})"
    return "(no message)" if text is None else json.dumps(text, ensure_ascii=False)


class Run:
    """One test file being played: a Player (respondent + clock) and the messages not yet taken."""

    def __init__(self, script: Script, flow: Flow, out):
        self.script, self.flow, self.out = script, flow, out
        last = None if script.last_message is None else START_TIME - script.last_message
        language = script.language[0] if script.language else None
        self.player = Player(flow, script.channel, script.phone, START_TIME, last_inbound_at=last, language=language)
        self.outbox: deque[Message] = deque()
        self.failures: list[str] = []

    def take(self, replies: list[Message]) -> None:
        for reply in replies:
            self.out(f"    < {_show(reply)}")
        self.outbox.extend(replies)

    def fail(self, where: str, expected: str, actual: str) -> None:
        self.failures.append(f"  {where}:\n    expected: {expected}\n    actual:   {actual}")

    def untaken(self, where: str) -> None:
        while self.outbox:
            self.fail(where, "every message to be taken by an expect", f"untaken message {_show(self.outbox.popleft())}")

    def play(self, action: Action) -> None:
        where = f"step {action.number} ({action.kind}, line {action.line})"
        if action.kind in ("send", "wait"):
            self.untaken(where)
        if action.kind == "send":
            self.out(f"    > {_show(action.text)}")
            self.take(self.player.send(action.text))
        elif action.kind == "wait":
            self.out(f"    ... {action.text}")
            self.take(self.player.wait(action.seconds))
        else:
            message = self.outbox.popleft() if self.outbox else None
            text = message if isinstance(message, str) else None
            if action.kind == "expect" and text != action.text:
                self.fail(where, _show(action.text), _show(message))
            elif action.kind == "expect_match" and (text is None or not action.pattern.search(text)):
                self.fail(where, f"a message matching /{action.text}/", _show(message))
            elif action.kind == "expect_template" and message != Template(action.text):
                self.fail(where, _show(Template(action.text)), _show(message))

    def invite(self) -> None:
        expected = self.script.start_refused
        try:
            self.take(self.player.invite(self.script.contact_fields))
        except NotStartable as err:
            if expected is None:
                self.fail("the invitation", "the survey to start", f"refused: {err.reason}")
            elif expected[0] != err.reason:
                self.fail(f"start_refused (line {expected[1]})", f"refused: {expected[0]}", f"refused: {err.reason}")
            return
        if expected is not None:
            self.fail(f"start_refused (line {expected[1]})", f"refused: {expected[0]}", "the survey started")

    def check_result(self) -> None:
        check_result(self.script, self.player.last_session(), self.fail)


def check_result(script: Script, last_session: tuple[str, dict, dict, list], fail,
                 unchecked_fields: frozenset[str] = frozenset()) -> None:
    """`result` against (status, answers, fields, not_shown); each difference to fail(where,
    expected, actual). `unchecked_fields`: fields the caller reports as not applicable."""
    status, answers, fields, not_shown = last_session
    if script.expected_status is not None and script.expected_status[0] != status:
        expected, line = script.expected_status
        fail(f"result status (line {line})", expected, status)
    expected_fields = [(name, node) for name, node in script.expected_fields if name not in unchecked_fields]
    for key, expected_values, actual_values in (("answer", script.expected_answers, answers),
                                                ("field", expected_fields, fields)):
        for name, node in expected_values:
            actual = actual_values.get(name)
            if not _matches(actual, node):
                missing = "not answered" if key == "answer" else "not set"
                expected = missing if node.tag == _NULL else _show(node.value)
                shown = missing if actual is None else _show(_answer_text(actual))
                fail(f"result {key} '{name}' (line {_line(node)})", expected, shown)
    if script.expected_not_shown is not None:
        expected, line = script.expected_not_shown
        if sorted(expected) != sorted(not_shown):
            fail(f"result not_shown (line {line})", str(expected), str(not_shown))


def _answer_text(actual) -> str:
    return actual["label"] if isinstance(actual, dict) else str(actual)


def _matches(actual, node: yaml.ScalarNode) -> bool:
    if node.tag == _NULL:
        return actual is None
    expected = node.value
    if actual is None:
        return False
    if isinstance(actual, dict):  # a choice: by label, or by code
        return expected == actual["label"] or _same(actual["code"], expected)
    if isinstance(actual, bool):
        return expected.lower() == ("true" if actual else "false")
    return _same(actual, expected)


def _same(actual, expected: str) -> bool:
    """Numbers compare as numbers (4, "4", 4.0 and 04 are one answer); anything else as text."""
    a, b = number(actual), number(expected)
    if a is not None and b is not None:
        return a == b
    return str(actual) == expected


def _check_ids(script: Script, flow: Flow) -> None:
    """ScriptError when `result` names a question the flow does not have: it could never match."""
    questions = [ask.id for ask in flow.survey.questions]
    named = [("answers", name, _line(node)) for name, node in script.expected_answers]
    if script.expected_not_shown is not None:
        ids, line = script.expected_not_shown
        named += [("not_shown", name, line) for name in ids]
    for where, name, line in named:
        if name not in questions:
            hint = suggest(name, questions) or f"its questions are {', '.join(questions)}"
            raise ScriptError(f"'{where}' names '{name}', which is not a question of the flow: {hint}", line)


def load(path: Path) -> tuple[Script, Flow]:
    """A test file and its flow; ScriptError when either is malformed."""
    script = read_script(path)
    try:
        flow = load_flow(script.flow)
    except FlowError as err:
        try:
            source = read_source(script.flow)
        except FlowError:
            source = None
        details = "\n".join(d.render(source) for d in err.diagnostics)
        raise ScriptError(f"the flow '{script.flow_as_written}' does not load:\n{details}",
                          script.flow_line) from None
    _check_ids(script, flow)
    if script.language is not None and script.language[0] not in flow.languages:
        code, line = script.language
        raise ScriptError(f"'language' {code} is not one of the survey's: {', '.join(flow.languages)}", line)
    return script, flow


def run_file(path: Path, verbose: bool = False, out=print) -> list[str]:
    """The failures of one test file (empty when it passes); ScriptError when it is malformed."""
    script, flow = load(path)
    run = Run(script, flow, out if verbose else lambda line: None)
    if script.start == "invite":
        run.invite()
    for action in script.steps:
        run.play(action)
    run.untaken("after the last step")
    run.check_result()
    return run.failures


def _expand(files) -> list[Path]:
    paths = []
    for name in files:
        path = Path(name)
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            paths.append(path)
    return paths


def run_tests(files, verbose: bool = False, web=None, own_channel: bool = True) -> int:
    """`canvass test`: 0 when no file fails (and one ran), 1 otherwise. Each file is played over
    its own channel (`own_channel`) and, given `web` (an entered
    engine.tools.web_conversation.WebPlayer), through the web survey's pages."""
    players = ([("", lambda path: Played(run_file(path, verbose)))] if own_channel else []) + \
              ([(" [web]", lambda path: web.run(path, verbose))] if web is not None else [])
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for path in _expand(files):
        for label, play in players:
            if verbose:
                print(f"{path}{label}")
            counts[_report(path, label, play)] += 1
    if not sum(counts.values()):
        print("no test files given")
    skipped = f", {counts['skipped']} not applicable" if counts["skipped"] else ""
    print(f"{counts['passed']} passed, {counts['failed']} failed{skipped}")
    return 0 if counts["failed"] == 0 and counts["passed"] > 0 else 1


def _report(path: Path, label: str, play) -> str:
    """Print how one file went over one channel; passed, failed or skipped."""
    try:
        played = play(path)
    except ScriptError as err:
        print(f"ERROR {path}:{err.line}: {err}" if err.line else f"ERROR {path}: {err}")
        return "failed"
    if played.not_applicable is not None:
        print(f"SKIP {path}{label}: not applicable: {played.not_applicable}")
        return "skipped"
    print(f"{'FAIL' if played.failures else 'PASS'} {path}{label}")
    for skipped in played.skipped:
        print(f"  skipped {skipped}")
    if played.failures:
        print("\n".join(played.failures))
        return "failed"
    return "passed"
