"""Printing surveys in both forms, `canvass convert`, and the example surveys that ship in surveys/."""

import json
import re
from pathlib import Path

import pytest
import yaml

from dsl import ast
from dsl.check import check_survey
from dsl.comments import read_comments, text_comments, yaml_comments
from dsl.convert import ConversionError, survey_to_json, to_text, to_yaml
from dsl.errors import FlowError
from dsl.load import load_file, parse_source
from dsl.pipe import PIPE, pipes
from engine.flow import in_language
from engine.sms.segments import count
from engine.tools.cli import main

ROOT = Path(__file__).resolve().parent.parent
SURVEYS = ROOT / "surveys"


def _is_survey_file(path: Path) -> bool:
    if "broken" in path.relative_to(ROOT / "tests").parts:
        return False
    if path.suffix == ".yaml":
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            return False
        if isinstance(data, dict) and "steps" in data:  # a conversation test, not a survey
            return False
    try:
        load_file(path)
    except FlowError:
        return False
    return True


FLOW_FILES = sorted([*SURVEYS.glob("*.yaml"), *SURVEYS.glob("*.survey"),
                     *(p for pattern in ("*.yaml", "*.survey") for p in (ROOT / "tests").rglob(pattern)
                       if _is_survey_file(p))])


def test_the_round_trip_covers_every_kind_of_good_flow():
    names = {p.name for p in FLOW_FILES}
    assert {"retail-nps.yaml", "install-followup.survey", "lang_quotes.survey", "lang_multiline.yaml"} <= names


@pytest.mark.parametrize("path", FLOW_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_both_printers_round_trip(path):
    survey, _ = load_file(path)
    as_yaml, as_text = to_yaml(survey), to_text(survey)
    assert parse_source(as_yaml, "x.yaml") == survey
    assert parse_source(as_text, "x.survey") == survey
    # printing what was printed changes nothing
    assert to_yaml(parse_source(as_text, "x.survey")) == as_yaml
    assert to_text(parse_source(as_yaml, "x.yaml")) == as_text
    json.dumps(survey_to_json(survey))


# ---------------------------------------------------------------- exact output

STORE_TEXT = """\
survey store-feedback "Store feedback"
access code "@STORE"

ask recommend nps "Hi ${e://Field/FirstName}! How likely are you to recommend us? Reply 0-10. Text STOP to opt out."
ask reason text "What is the main reason for your score?" if recommend <= 6
ask visit choice "What did you shop for today?"
    1 "Groceries"
    2 "Clothing"
    3 "Electronics"
set segment = "promoter" if recommend >= 9 else "other"
goto promoter_end if recommend >= 9
end default_end "Thanks, ${e://Field/FirstName}. Your answers help us improve."
end promoter_end "Thanks! Would you leave us a review? https://example.com/review"
"""

STORE_YAML = """\
survey: store-feedback
title: Store feedback
access_code: '@STORE'

flow:
  - ask: recommend
    type: nps
    prompt: Hi ${e://Field/FirstName}! How likely are you to recommend us? Reply 0-10. Text STOP to opt out.
  - ask: reason
    type: text
    prompt: What is the main reason for your score?
    show_if: recommend <= 6
  - ask: visit
    type: choice
    prompt: What did you shop for today?
    choices: [Groceries, Clothing, Electronics]
  - set: segment
    value: '"promoter" if recommend >= 9 else "other"'
  - goto: promoter_end
    if: recommend >= 9
  - end: default_end
    message: Thanks, ${e://Field/FirstName}. Your answers help us improve.
  - end: promoter_end
    message: Thanks! Would you leave us a review? https://example.com/review
"""


def test_text_to_yaml_reads_as_a_person_would_write_it():
    assert to_yaml(parse_source(STORE_TEXT, "x.survey")) == STORE_YAML


def test_yaml_to_text_reads_as_a_person_would_write_it():
    assert to_text(parse_source(STORE_YAML, "x.yaml")) == STORE_TEXT


EVERY_SETTING = ast.Survey(
    id="all", title="All", expires_after=5400, access_code="@ALL", access_code_countries=["US", "CA"],
    end_message="Bye.", sender="+15555550100",
    fields=["FirstName", "Store"], remind_after=86400, remind_message="Still there?",
    not_in_survey_message="No survey.", help_message="Help.", content_sid="HX" + "a" * 32)


def test_settings_print_in_the_documented_key_order():
    assert to_yaml(EVERY_SETTING) == """\
survey: all
title: All
expires_after: 90m
access_code: '@ALL'
access_code_countries: [US, CA]
end_message: Bye.
sender: '+15555550100'
fields: [FirstName, Store]
remind_after: 1d
remind_message: Still there?
not_in_survey_message: No survey.
help_message: Help.
whatsapp_template: HXaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa

flow: []
"""
    assert to_text(EVERY_SETTING) == """\
survey all "All"
expires after 90m
remind after 1d "Still there?"
access code "@ALL"
access code countries US, CA
sender "+15555550100"
end message "Bye."
fields FirstName, Store
not in survey message "No survey."
help message "Help."
whatsapp template "HXaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

"""


def _ask(**kw) -> ast.Survey:
    fields = {"id": "q", "type": "choice", "prompt": "Pick"} | kw
    return ast.Survey(id="s", elements=[ast.Ask(**fields)])


def _flow_yaml(survey: ast.Survey) -> str:
    return to_yaml(survey).split("flow:\n", 1)[1]


def test_every_option_prints_in_both_forms():
    survey = _ask(type="text", show_if=ast.Answered(target=ast.Name(name="a")), invalid_message="Shorter please.",
                  attempts=2, on_invalid="skip", max_length=140)
    assert _flow_yaml(survey) == """\
  - ask: q
    type: text
    prompt: Pick
    show_if: a is answered
    invalid_message: Shorter please.
    attempts: 2
    on_invalid: skip
    max_length: 140
"""
    assert to_text(survey).split("\n\n", 1)[1] == """\
ask q text "Pick" if a is answered
    invalid "Shorter please."
    attempts 2
    then skip
    max length 140
"""


CHOICE_LAYOUTS = [
    ("numbered", [("1", "Tea"), ("2", "Coffee")], "    choices: [Tea, Coffee]\n"),
    ("numbered-look-alikes", [("1", "Yes"), ("2", "1.50"), ("3", "1.5")], "    choices: ['Yes', '1.50', 1.5]\n"),
    ("numbered-quoted", [("1", "Yes, please"), ("2", "null"), ("3", "10")],
     "    choices: ['Yes, please', 'null', 10]\n"),
    ("numbered-long", [("1", "A label long enough"), ("2", "that the list would not fit on one line")],
     "    choices:\n      - A label long enough\n      - that the list would not fit on one line\n"),
    ("letter-codes", [("Y", "Yes"), ("N", "No")],
     "    choices:\n      - {code: Y, label: 'Yes'}\n      - {code: N, label: 'No'}\n"),
    ("out-of-order", [("2", "Two"), ("1", "One")],
     "    choices:\n      - {code: 2, label: Two}\n      - {code: 1, label: One}\n"),
    ("multi-line-label", [("1", "Line\nbreak")], "    choices:\n      - |-\n        Line\n        break\n"),
]


@pytest.mark.parametrize(("pairs", "expected"), [c[1:] for c in CHOICE_LAYOUTS], ids=[c[0] for c in CHOICE_LAYOUTS])
def test_choices_print_as_labels_when_codes_count_from_one(pairs, expected):
    survey = _ask(choices=[ast.Choice(code, label) for code, label in pairs])
    assert _flow_yaml(survey).split("prompt: Pick\n")[1] == expected
    assert parse_source(to_yaml(survey), "x.yaml") == survey


# Text values YAML would read as something else, or that need quoting.
AWKWARD_TEXT = ["@STORE", "yes", "No", "null", "~", "", "1", "0x1F", "1.5", "2024-01-01", "#tag", "- item",
                ": colon", "a: b", "[x]", "{x}", "'quoted'", '"quoted"', " leading", "trailing ", "*star",
                "&anchor", "!tag", "%percent", "`tick", "|bar", ">gt", "a\tb", "a\\b", "é ü ✓ 😀",
                "two\nlines", "ends with newline\n", "\n", "  indented\nlines", "NEL \x85 char"]


@pytest.mark.parametrize("text", AWKWARD_TEXT)
def test_awkward_text_survives_both_forms(text):
    survey = ast.Survey(id="s", title=text, access_code=text,
                        elements=[ast.Ask(id="q", type="choice", prompt=text, choices=[ast.Choice("A", text)]),
                                  ast.Set(name="v", value=ast.Literal(value=text)), ast.End(id="e", message=text)])
    assert parse_source(to_yaml(survey), "x.yaml") == survey
    assert parse_source(to_text(survey), "x.survey") == survey


def test_yaml_keeps_numbers_plain_and_quotes_look_alikes():
    survey = ast.Survey(id="2024", title="yes", access_code="1.5", elements=[
        ast.Goto(target="x", cond=ast.Literal(value=True)), ast.Set(name="n", value=ast.Literal(value=7))])
    assert to_yaml(survey) == """\
survey: 2024
title: 'yes'
access_code: 1.5

flow:
  - goto: x
    if: true
  - set: n
    value: 7
"""


# Things only the YAML form can hold; the text form refuses them with a reason.
NOT_TEXT = [
    ("remind-message-alone", ast.Survey(id="s", remind_message="Hi?"), "remind_message is given without remind_after"),
    ("survey-id", ast.Survey(id="my survey"), "survey id 'my survey'"),
    ("question-id", _ask(id="q-1"), "question id 'q-1' is not a name"),
    ("type", _ask(type="Multiple Choice"), "type 'Multiple Choice'"),
    ("code-keyword", _ask(choices=[ast.Choice("end", "End")]), "choice code 'end'"),
    ("code-long", _ask(choices=[ast.Choice("123456789", "x")]), "choice code '123456789'"),
    ("code-punctuation", _ask(choices=[ast.Choice("a.", "x")]), "choice code 'a.'"),
    ("on-invalid", _ask(on_invalid="retry"), "on_invalid of question 'q' must be skip or end"),
    ("attempts", _ask(attempts=-1), "attempts -1 is negative"),
    ("field", ast.Survey(id="s", fields=["First Name"]), "field 'First Name'"),
    ("end-message", ast.Survey(id="s", elements=[ast.End(id="message")]), "an end named 'message'"),
    ("goto", ast.Survey(id="s", elements=[ast.Goto(target="9lives")]), "goto target '9lives'"),
]


@pytest.mark.parametrize(("survey", "reason"), [c[1:] for c in NOT_TEXT], ids=[c[0] for c in NOT_TEXT])
def test_text_form_refuses_what_it_cannot_write(survey, reason):
    with pytest.raises(ConversionError, match=re.escape(reason)):
        to_text(survey)
    assert parse_source(to_yaml(survey), "x.yaml") == survey


def test_survey_to_json_keeps_positions():
    survey = parse_source('survey s\n\nask q text "Hi?" if a == 1\n', "x.survey")
    data = survey_to_json(survey)
    assert data["elements"][0]["show_if"] == {
        "node": "Compare", "line": 3, "col": 21, "length": 6, "op": "==",
        "left": {"node": "Name", "line": 3, "col": 21, "length": 1, "name": "a"},
        "right": {"node": "Literal", "line": 3, "col": 26, "length": 1, "value": 1}}
    assert "path" not in data


# ---------------------------------------------------------------- canvass convert


def test_convert_prints_the_other_form(tmp_path, capsys):
    path = tmp_path / "store.survey"
    path.write_text(STORE_TEXT, encoding="utf-8")
    assert main(["convert", str(path), "--to", "yaml"]) == 0
    assert capsys.readouterr().out == STORE_YAML
    path = tmp_path / "store.yaml"
    path.write_text(STORE_YAML, encoding="utf-8")
    assert main(["convert", str(path), "--to", "text"]) == 0
    assert capsys.readouterr().out == STORE_TEXT


def test_convert_reports_parse_errors_with_a_caret(tmp_path, capsys):
    path = tmp_path / "bad.survey"
    path.write_text('survey s\nask q text "Hi" if a ==\n', encoding="utf-8")
    assert main(["convert", str(path), "--to", "yaml"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"{path}:2:")
    assert "      ask q text" in err and "^" in err


@pytest.mark.parametrize(("name", "content"), [("missing.yaml", None), ("notes.txt", b"survey: s\n"),
                                               ("latin1.yaml", b"survey: caf\xe9\n")])
def test_convert_unreadable_files_exit_2(tmp_path, capsys, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert main(["convert", str(path), "--to", "text"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and f"{path}" in err and "error[E002]" in err


def test_convert_explains_what_the_text_form_cannot_hold(tmp_path, capsys):
    path = tmp_path / "codes.yaml"
    path.write_text("survey: s\nflow:\n  - ask: q\n    type: choice\n    prompt: Pick\n"
                    "    choices: [{code: a-1, label: A}, {code: b-2, label: B}]\n", encoding="utf-8")
    assert main(["convert", str(path), "--to", "text"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "cannot write this survey in the text form: choice code 'a-1' of question 'q'" in err


# ---------------------------------------------------------------- the example surveys


def test_every_example_survey_comes_in_both_forms_with_the_same_meaning():
    stems = {p.stem for p in SURVEYS.iterdir() if p.suffix in (".yaml", ".survey")}
    assert len(stems) >= 4
    for stem in sorted(stems):
        yaml_survey, _ = load_file(SURVEYS / f"{stem}.yaml")
        text_survey, _ = load_file(SURVEYS / f"{stem}.survey")
        assert yaml_survey == text_survey, stem
    assert sorted(p.name for p in SURVEYS.iterdir()) == sorted(f"{s}.{ext}" for s in stems for ext in ("survey", "yaml"))


EXAMPLES = sorted(SURVEYS.glob("*.yaml"))
EVERY_CONSTRUCT = "install-followup"


def _messages(survey: ast.Survey) -> list[str]:
    """Every message the survey words itself, in every language it speaks."""
    out = []
    default = survey.default_language
    for language in survey.languages or [default]:
        def said(node, attr, language=language):
            return in_language(node, attr, language, default)
        out += [said(survey, key) for key in ("end_message", "remind_message", "not_in_survey_message",
                                              "help_message")]
        for element in survey.elements:
            if isinstance(element, ast.Ask):
                choices = "".join(f"\n{c.code}. {c.text(language)}" for c in element.choices)  # as it is sent
                out += [said(element, "prompt") + choices, said(element, "invalid_message")]
            elif isinstance(element, ast.End):
                out.append(said(element, "message"))
    return [m for m in out if m]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_surveys_follow_the_sms_rules(path):
    survey, _ = load_file(path)
    assert [d.render() for d in check_survey(survey) if d.is_error] == []
    first = survey.questions[0]
    assert first.show_if is None and "STOP" in first.prompt
    assert "Text STOP to opt out" in in_language(first, "prompt", "en", survey.default_language)
    assert all("STOP" in text for text in first.translations.get("prompt", {}).values())
    assert all("0-10" in q.prompt for q in survey.questions if q.type == "nps")
    assert len(survey.questions) <= 3 or path.stem == EVERY_CONSTRUCT
    for message in _messages(survey):
        sms = count(PIPE.sub("x" * 10, message))  # piped text counted as 10 characters, as `canvass check` does
        assert (sms.encoding, sms.segments) == ("GSM-7", 1), message


def _constructs(survey: ast.Survey) -> set[str]:
    found = {f"setting:{key}" for key in ("title", "access_code", "end_message", "sender", "remind_after",
                                          "remind_message", "not_in_survey_message", "help_message", "content_sid")
             if getattr(survey, key) is not None}
    found |= {"setting:fields"} if survey.fields else set()
    found |= {"setting:expires_after"} if survey.expires_after != ast.DEFAULT_EXPIRES_AFTER else set()
    texts = _messages(survey)
    for element in survey.elements:
        found.add(type(element).__name__ + (":conditional" if getattr(element, "cond", None) else ""))
        if isinstance(element, ast.Ask):
            found.add(f"type:{element.type}")
            found |= {f"option:{k}" for k in ("invalid_message", "attempts", "max_length") if getattr(element, k)}
            found |= {f"on_invalid:{element.on_invalid}"} if element.on_invalid else set()
            found |= {"choices:letters"} if any(c.code.isalpha() for c in element.choices) else set()
        for expr in (getattr(element, "show_if", None), getattr(element, "value", None), getattr(element, "cond", None)):
            for node in ast.walk(expr):
                found.add(type(node).__name__)
                if isinstance(node, ast.Compare | ast.BoolOp):
                    found.add(f"op:{node.op}")
                if isinstance(node, ast.In | ast.Answered):
                    found.add(f"{type(node).__name__}:{'negated' if node.negated else 'plain'}")
                if isinstance(node, ast.Literal):
                    found.add(f"literal:{type(node.value).__name__}")
    found |= {f"pipe:{p.kind}:{p.part}" for text in texts for p in pipes(text)}
    return found


def test_one_example_uses_every_construct():
    survey, _ = load_file(SURVEYS / f"{EVERY_CONSTRUCT}.yaml")
    expected = {
        *(f"setting:{k}" for k in ("title", "expires_after", "access_code", "end_message", "sender", "fields",
                                   "remind_after", "remind_message", "not_in_survey_message", "help_message",
                                   "content_sid")),
        "type:nps", "type:choice", "type:text", "choices:letters", "option:invalid_message", "option:attempts",
        "option:max_length", "on_invalid:skip", "on_invalid:end", "Set", "Goto", "Goto:conditional", "End",
        *(f"op:{op}" for op in ("==", "!=", "<", "<=", ">", ">=", "and", "or")),
        "Not", "In:plain", "In:negated", "Contains", "Answered:plain", "Answered:negated", "Conditional",
        "ListExpr", "literal:str", "literal:int", "literal:bool",
        "pipe:field:", "pipe:question:SelectedChoices", "pipe:question:ChoiceTextEntryValue", "pipe:link:",
    }
    assert expected - _constructs(survey) == set()
    assert sum(isinstance(e, ast.End) for e in survey.elements) >= 3


WRITTEN_DURATIONS = [
    ("yaml", 'survey: x\nexpires_after: 24h\nremind_after: "120 m"\nflow:\n  - ask: a\n    type: text\n    prompt: Hi\n',
     ["expires_after: 24h", "remind_after: 120 m"], ["expires after 24h", "remind after 120 m"]),
    ("survey", 'survey x\nexpires after 24h\nremind after 7200s "Still there?"\nask a text "Hi"\n',
     ["expires_after: 24h", "remind_after: 7200s"], ["expires after 24h", 'remind after 7200s "Still there?"']),
]


@pytest.mark.parametrize(("suffix", "source", "in_yaml", "in_text"), WRITTEN_DURATIONS, ids=["yaml", "text"])
def test_conversion_keeps_durations_as_written(tmp_path, capsys, suffix, source, in_yaml, in_text):
    path = tmp_path / f"x.{suffix}"
    path.write_text(source, encoding="utf-8")
    assert main(["convert", str(path), "--to", "yaml"]) == 0
    as_yaml = capsys.readouterr().out
    assert all(line in as_yaml.splitlines() for line in in_yaml), as_yaml
    assert main(["convert", str(path), "--to", "text"]) == 0
    as_text = capsys.readouterr().out
    assert all(line in as_text.splitlines() for line in in_text), as_text
    survey = parse_source(source, path.name)
    assert parse_source(as_yaml, "y.yaml") == survey == parse_source(as_text, "y.survey")
    assert "expires_after: 1d" in to_yaml(survey)  # without the source: the shortest spelling


# ---------------------------------------------------------------- comments

COMMENTED_YAML = """\
# Top of the file.
survey: demo  # the id
# The title
title: Demo
expires_after: 48h  # the default: left out
remind_after: 2h
# Ask again once.
remind_message: Still there?
end_message: |
  Thanks!
  # not a comment
texts:
  # Our own prefix.
  reminder_prefix: "Hey: "
flow:
  # First question.
  - ask: score  # NPS
    # about the type
    type: nps
    prompt: "Rate us # 0-10"
  - ask: pick
    type: choice
    prompt: Pick one
    choices:
      - A  # first
      - B

  # Jump ahead.
  - goto: done
    if: score >= 9
  - end: done  # bye
# The end.
"""

COMMENTED_YAML_AS_TEXT = """\
# Top of the file.
# The title
survey demo "Demo"  # the id
# Ask again once.
remind after 2h "Still there?"
end message "Thanks!\\n# not a comment\\n"
# Our own prefix.
text reminder_prefix "Hey: "

# First question.
ask score nps "Rate us # 0-10"  # NPS
ask pick choice "Pick one"
    1 "A"
    2 "B"
# Jump ahead.
goto done if score >= 9
end done  # bye
# The end.
"""

COMMENTED_TEXT = """\
# Top.

survey demo  # the id
# Expiry.
expires after 3d
fields A, B  # who
languages en, es
text reminder_prefix "Hey # you: "
    # between a text and its translation
    es: "Oye: "
ask q choice "Pick # one"  # the pick
    # under the ask
    1 "Yes"  # yes
    2 'No # really'

# Tally.
set n = 1
goto e if q == "1" \\
   and n == 1  # beside a continued line
end e "Bye"
    es: "Adios"  # beside a translation
# trailing
"""

COMMENTED_TEXT_AS_YAML = """\
# Top.
survey: demo  # the id
languages: [en, es]
# Expiry.
expires_after: 3d
fields: [A, B]  # who
texts:
  reminder_prefix: {en: 'Hey # you: ', es: 'Oye: '}

flow:
  - ask: q  # the pick
    type: choice
    prompt: 'Pick # one'
    choices: ['Yes', 'No # really']
  # Tally.
  - set: n
    value: 1
  - goto: e
    if: q == "1" and n == 1
  - end: e
    message: {en: Bye, es: Adios}
# trailing
"""

# (name, file, its source, the other form as printed, the comments reported as not kept)
COMMENT_CASES = [
    ("yaml", "x.yaml", COMMENTED_YAML, COMMENTED_YAML_AS_TEXT,
     ["# the default: left out", "# about the type", "# first"]),
    ("text", "x.survey", COMMENTED_TEXT, COMMENTED_TEXT_AS_YAML,
     ["# between a text and its translation", "# under the ask", "# yes", "# beside a continued line",
      "# beside a translation"]),
]


def _comment_texts(source: str, form: str) -> list[str]:
    found = yaml_comments(source) if form == "yaml" else text_comments(source)
    return [comment.text for comment, _ in found]


def _line_of(source: str, text: str) -> int:
    return next(n for n, line in enumerate(source.split("\n"), 1) if text in line)


@pytest.mark.parametrize(("name", "source", "expected", "lost"), [(c[1], c[2], c[3], c[4]) for c in COMMENT_CASES],
                         ids=[c[0] for c in COMMENT_CASES])
def test_convert_keeps_comments_above_and_beside_settings_and_elements(tmp_path, capsys, name, source, expected,
                                                                      lost):
    path = tmp_path / name
    path.write_text(source, encoding="utf-8")
    other = "text" if name.endswith(".yaml") else "yaml"
    assert main(["convert", str(path), "--to", other]) == 0
    out, err = capsys.readouterr()
    assert out == expected
    assert parse_source(out, f"y.{'survey' if other == 'text' else 'yaml'}") == parse_source(source, name)
    assert [line.split(" (")[0] for line in err.splitlines()] == [
        f"{path}:{_line_of(source, text)}: comment not kept: {text}" for text in lost]


@pytest.mark.parametrize(("name", "source", "lost"), [(c[1], c[2], c[4]) for c in COMMENT_CASES],
                         ids=[c[0] for c in COMMENT_CASES])
def test_printing_a_file_in_its_own_form_keeps_its_placeable_comments(tmp_path, capsys, name, source, lost):
    path = tmp_path / name
    path.write_text(source, encoding="utf-8")
    form = "yaml" if name.endswith(".yaml") else "text"
    assert main(["convert", str(path), "--to", form]) == 0
    out, err = capsys.readouterr()
    kept = [text for text in _comment_texts(source, form) if text not in lost]
    assert _comment_texts(out, form) == kept
    assert len(err.splitlines()) == len(lost)


@pytest.mark.parametrize(("name", "source", "lost"), [(c[1], c[2], c[4]) for c in COMMENT_CASES],
                         ids=[c[0] for c in COMMENT_CASES])
def test_a_round_trip_through_the_other_form_keeps_every_placeable_comment(tmp_path, capsys, name, source, lost):
    form = "yaml" if name.endswith(".yaml") else "text"
    other, other_name = ("text", "y.survey") if form == "yaml" else ("yaml", "y.yaml")
    path = tmp_path / name
    path.write_text(source, encoding="utf-8")
    assert main(["convert", str(path), "--to", other]) == 0
    there = capsys.readouterr().out
    back_path = tmp_path / other_name
    back_path.write_text(there, encoding="utf-8")
    assert main(["convert", str(back_path), "--to", form]) == 0
    back, err = capsys.readouterr()
    assert err == ""  # what arrived in the other form all has a home there
    kept = [text for text in _comment_texts(source, form) if text not in lost]
    assert sorted(_comment_texts(back, form)) == sorted(kept)
    assert parse_source(back, name) == parse_source(source, name)


COMMENT_HOMES = [
    # (name, file, source, (comment, the line of the printed other form it must stand on or just above))
    ("top-of-file", "x.survey", '# one\n# two\n\nsurvey s\nask a text "Hi"\n',
     [("# one", "# two"), ("# two", "survey: s")]),
    ("yaml-flow-key", "x.yaml", "survey: s\n# the questions\nflow:  # in order\n  - ask: a\n    type: text\n    prompt: Hi\n",
     [("# the questions", "# in order"), ("# in order", 'ask a text "Hi"')]),
    ("yaml-texts-key", "x.yaml", "survey: s\n# our words\ntexts:\n  opt_out_link: Bye\nflow:\n  - end: e\n",
     [("# our words", 'text opt_out_link "Bye"')]),
    ("title-setting-line", "x.survey", 'survey s\n# named\ntitle "T"  # shown\nask a text "Hi"\n',
     [("# named", "title: T  # shown"), ("# shown", "title: T  # shown")]),
    ("remind-message-key", "x.yaml", "survey: s\nremind_after: 1h  # soon\nremind_message: Hi?  # gently\n"
     "flow:\n  - ask: a\n    type: text\n    prompt: Hi\n",
     [("# gently", "# gently"), ("# soon", 'remind after 1h "Hi?"  # soon')]),
    ("whatsapp-template", "x.yaml", "survey: s\n# approved\nwhatsapp_template: HX1\nflow:\n  - end: e\n",
     [("# approved", 'whatsapp template "HX1"')]),
]


@pytest.mark.parametrize(("name", "source", "homes"), [c[1:] for c in COMMENT_HOMES], ids=[c[0] for c in COMMENT_HOMES])
def test_each_comment_finds_its_home_in_the_other_form(name, source, homes):
    survey = parse_source(source, name)
    form = "yaml" if name.endswith(".yaml") else "text"
    comments = read_comments(survey, source, form)
    out = to_text(survey, source, comments) if form == "yaml" else to_yaml(survey, source, comments)
    lines = [line.strip() for line in out.splitlines()]
    for comment, home in homes:
        index = next(i for i, line in enumerate(lines) if line.endswith(comment))
        assert lines[index] == home or lines[index + 1] == home, out
    assert comments.not_kept() == []


def test_conversion_without_comments_prints_none(tmp_path):
    survey, source = load_file(SURVEYS / "retail-nps.yaml")
    assert "#" not in to_text(survey, source)
    assert to_yaml(survey, source, read_comments(survey, "", "yaml")) == to_yaml(survey, source)


@pytest.mark.parametrize("path", sorted([*SURVEYS.glob("*.yaml"), *SURVEYS.glob("*.survey")]), ids=lambda p: p.name)
def test_example_surveys_keep_their_comments_and_meaning_in_the_other_form(tmp_path, capsys, path):
    form = "yaml" if path.suffix == ".yaml" else "text"
    other, other_name = ("text", "y.survey") if form == "yaml" else ("yaml", "y.yaml")
    assert main(["convert", str(path), "--to", other]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    source = path.read_text(encoding="utf-8")
    assert _comment_texts(out, other) == _comment_texts(source, form)
    assert parse_source(out, other_name) == parse_source(source, path.name)
