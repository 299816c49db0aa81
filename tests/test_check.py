"""`canvass check`: language checks (dsl/check.py) and the SMS compatibility report (engine/sms/compat.py).

The broken flows in tests/flows/broken/ each carry the problem they show in their name and
first line; tests/flows/broken/expected.golden lists the code and line:col of every diagnostic
for each. Regenerate it with CANVASS_REGEN=1 .venv/bin/pytest tests/test_check.py and review
the diff.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.check import check_survey
from dsl.errors import FlowError
from dsl.load import parse_source
from engine.sms.compat import check_file, check_source, compat_diagnostics, summary
from engine.tools.cli import main

FLOWS = Path(__file__).parent / "flows"
BROKEN = FLOWS / "broken"
GOLDEN = BROKEN / "expected.golden"
ALL_CODES = {f"E{n:03d}" for n in range(1, 30)} | {f"W{n:03d}" for n in range(1, 11)}


def broken_flows() -> list[Path]:
    return sorted(p for p in BROKEN.iterdir() if p != GOLDEN)


def codes_at(path: Path) -> list[str]:
    report = check_file(str(path))
    return [f"{path.name} {d.code} {d.line}:{d.col}" for d in report.diagnostics]


# ---------------------------------------------------------------- golden: broken flows


def test_broken_flows_match_the_golden_file():
    lines = [line for path in broken_flows() for line in codes_at(path)]
    text = ("# canvass check on each flow here: file, code, line:col of every diagnostic.\n"
            "# Regenerate: CANVASS_REGEN=1 .venv/bin/pytest tests/test_check.py (then review the diff)\n"
            + "\n".join(lines) + "\n")
    if os.environ.get("CANVASS_REGEN"):
        GOLDEN.write_text(text, encoding="utf-8")
    assert GOLDEN.read_text(encoding="utf-8") == text


@pytest.mark.parametrize("path", broken_flows(), ids=lambda p: p.name)
def test_each_broken_flow_reports_what_its_name_says(path):
    named = re.match(r"([ew]\d{3})_", path.name)
    found = {line.split()[1] for line in codes_at(path)}
    assert found, "a broken flow must produce a diagnostic"
    if named:
        assert named.group(1).upper() in found


def test_broken_flows_cover_every_code():
    golden = GOLDEN.read_text(encoding="utf-8")
    found = {m.group(0) for m in re.finditer(r"\b[EW]\d{3}\b", golden)}
    assert found >= ALL_CODES, f"no broken flow shows {sorted(ALL_CODES - found)}"
    assert len(broken_flows()) >= 35
    assert sum(p.suffix == ".survey" for p in broken_flows()) >= 8


# ---------------------------------------------------------------- good flows


# Good flows that pipe contact fields and have an access code: W008 is their only diagnostic.
EXPECTED_WARNINGS = {"check_names.yaml": ["W008"], "check_store_feedback.yaml": ["W008"],
                     "check_store_feedback.survey": ["W008"]}


@pytest.mark.parametrize("path", sorted(FLOWS.glob("good/check_*")), ids=lambda p: p.name)
def test_check_good_flows_are_clean(path):
    report = check_source(path.read_text(encoding="utf-8"), str(path))
    assert [d.code for d in report.diagnostics] == EXPECTED_WARNINGS.get(path.name, [])


@pytest.mark.parametrize("path", sorted([*FLOWS.glob("good/*"), *(FLOWS.parent.parent / "surveys").glob("*")]),
                         ids=lambda p: p.name)
def test_good_flows_and_shipped_surveys_pass(path, capsys):
    assert main(["check", str(path)]) == 0, capsys.readouterr().out


# ---------------------------------------------------------------- exact output

RECOMEND = """\
survey: x
flow:
  - ask: recommend
    type: nps
    prompt: How likely are you to recommend us? Reply 0-10. Text STOP to opt out.
  - ask: reason
    type: text
    prompt: Why?
    show_if: recomend <= 6
"""


def test_text_output_is_exact(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("x.yaml").write_text(RECOMEND, encoding="utf-8")
    assert main(["check", "x.yaml"]) == 1
    assert capsys.readouterr().out == (
        "x.yaml:9:14: error[E012]: unknown question 'recomend' in show_if\n"
        "          show_if: recomend <= 6\n"
        "                   ^^^^^^^^\n"
        "  hint: did you mean 'recommend'?\n"
        "x.yaml: 2 questions, 2 paths, 2-3 SMS segments per complete response "
        "(piped text counted as 10 characters); 1 error, 0 warnings\n"
    )


def test_json_output_shape(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(RECOMEND, encoding="utf-8")
    good = FLOWS / "good" / "check_store_feedback.yaml"
    missing = tmp_path / "missing.yaml"
    assert main(["check", "--json", str(good), str(bad), str(missing)]) == 2
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"files", "errors", "warnings"}
    assert [f["path"] for f in out["files"]] == [str(good), str(bad), str(missing)]
    assert out["errors"] == 2 and out["warnings"] == 1
    assert [d["code"] for d in out["files"][0]["diagnostics"]] == ["W008"]
    assert {k: v for k, v in out["files"][0].items() if k != "diagnostics"} == {"path": str(good), "summary": {
        "questions": 3, "most_questions": 3, "paths": 3, "min_segments": 3, "max_segments": 4,
        "assumed_pipe_length": 10}}
    (diagnostic,) = out["files"][1]["diagnostics"]
    assert diagnostic == {"path": str(bad), "line": 9, "col": 14, "code": "E012", "severity": "error",
                          "message": "unknown question 'recomend' in show_if",
                          "hint": "did you mean 'recommend'?", "length": 8}
    assert out["files"][2]["summary"] is None
    assert out["files"][2]["diagnostics"][0]["code"] == "E002"


# ---------------------------------------------------------------- exit codes


def write(tmp_path, name: str, data: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


def test_exit_codes(tmp_path, capsys):
    clean = str(FLOWS / "good" / "check_store_feedback.yaml")
    warned = str(BROKEN / "w006_too_many_questions.yaml")
    broken = str(BROKEN / "e012_unknown_show_if.yaml")
    assert main(["check", clean]) == 0
    assert main(["check", warned]) == 0  # warnings alone pass
    assert main(["check", broken]) == 1
    assert main(["check", clean, broken]) == 1
    assert main(["check", broken, str(tmp_path / "missing.yaml")]) == 2  # unreadable beats errors
    assert main(["check", "--pipe-length", "-1", clean]) == 2
    assert main(["check", "--pipe-length", "1000000000", clean]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["check"])
    assert exit_info.value.code == 2
    capsys.readouterr()


NESTED_EXPRESSION = ("survey: x\nflow:\n  - ask: a\n    type: nps\n    prompt: Reply 0-10. Text STOP to opt out.\n"
                     "  - ask: b\n    type: text\n    prompt: Why?\n    show_if: \"{}\"\n")

BAD_INPUT = [
    # (id, file name, content, exit code, code of the first diagnostic)
    ("binary", "x.yaml", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 2, "E002"),
    ("empty", "x.yaml", b"", 2, "E002"),
    ("blank", "x.survey", b"  \n\n  \n", 2, "E002"),
    ("huge", "x.yaml", b"# " + b"a" * (2 << 20) + b"\n", 2, "E002"),
    ("not-utf8", "x.yaml", b"survey: caf\xe9\n", 2, "E002"),
    ("random-bytes", "x.yaml", random.Random(7).randbytes(4096), 2, "E002"),
    ("wrong-extension", "x.json", b'{"survey": "x"}', 2, "E002"),
    ("no-extension", "survey", b"survey: x\n", 2, "E002"),
    ("nested-lists", "x.yaml", b"[" * 5000 + b"]" * 5000, 1, "E001"),
    ("nested-block-lists", "x.yaml", b"- " * 5000 + b"x\n", 1, "E001"),
    ("nested-mappings", "x.yaml", b"{a: " * 5000 + b"1" + b"}" * 5000, 1, "E001"),
    ("nested-not", "x.yaml", NESTED_EXPRESSION.format("not " * 3000 + "a").encode(), 1, "E021"),
    ("nested-brackets", "x.yaml", NESTED_EXPRESSION.format("a in " + "[" * 3000 + "]" * 3000).encode(), 1, "E021"),
    ("scalar", "x.yaml", b"just a sentence\n", 1, "E005"),
    ("list", "x.yaml", b"- a\n- b\n", 1, "E005"),
    ("random-text", "x.survey", "ask ask ask \"\n\t}{ ☃".encode(), 1, "E001"),
    ("tabs", "x.yaml", b"survey: x\nflow:\n\t- ask: a\n", 1, "E001"),
]


@pytest.mark.parametrize("name,content,exit_code,code", [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_gets_a_diagnostic_not_a_traceback(tmp_path, capsys, name, content, exit_code, code):
    path = write(tmp_path, name, content)
    assert main(["check", path]) == exit_code
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert f"[{code}]" in out.out.splitlines()[0]


def test_missing_file_and_directory(tmp_path, capsys):
    (tmp_path / "dir.yaml").mkdir()
    for path in (tmp_path / "missing.yaml", tmp_path / "dir.yaml", tmp_path):
        assert main(["check", str(path)]) == 2
        assert "[E002]" in capsys.readouterr().out


# ---------------------------------------------------------------- summary: cost per path


def test_summary_counts_paths_and_segments_by_hand():
    # Segments by hand (GSM-7: one SMS holds 160 characters; longer texts go in parts of 153;
    # UCS-2: 70, parts of 67):
    #   recommend  22-character pipe + 150 characters: 10 + 150 = 160 -> 1 (pipes at 11: 161 -> 2)
    #   reason     200 characters -> 2 (153 + 47); shown only when recommend <= 6
    #   goto promoter_end when recommend >= 9
    #   visit      150 + "\n1. Yes" (7) + "\n2. No" (6) = 163 -> 2: the choices tip it over
    #   other_end  "Bye" -> 1
    #   promoter_end  an emoji (2 UTF-16 units) + 69 characters = 71 units of UCS-2 -> 2 (67 + 4)
    # Paths a respondent can take: 3 (reason is shown only when recommend <= 6, and then the goto,
    # taken only when recommend >= 9, cannot be):
    #   skipped, taken (9-10): 1 + 2 = 3       skipped, not taken (7-8): 1 + 2 + 1 = 4
    #   shown, not taken (0-6): 1 + 2 + 2 + 1 = 6
    survey = parse_source(f"""\
survey: cost
flow:
  - ask: recommend
    type: nps
    prompt: "${{e://Field/FirstName}}{'a' * 150}"
  - ask: reason
    type: text
    prompt: {'b' * 200}
    show_if: recommend <= 6
  - goto: promoter_end
    if: recommend >= 9
  - ask: visit
    type: choice
    prompt: {'c' * 150}
    choices: ["Yes", "No"]
  - end: other_end
    message: Bye
  - end: promoter_end
    message: "\\U0001F600{'d' * 69}"
""", "cost.yaml")
    assert summary(survey) == {"questions": 3, "most_questions": 3, "paths": 3, "min_segments": 3,
                               "max_segments": 6, "assumed_pipe_length": 10}
    assert summary(survey, assume_pipe_length=11)["min_segments"] == 4
    assert summary(survey, assume_pipe_length=11)["max_segments"] == 7


def test_summary_falls_off_the_end_with_the_default_message():
    # "Why?" -> 1; no end and no end_message: DEFAULT_END_MESSAGE (58 characters) -> 1
    survey = parse_source("survey: x\nflow:\n  - ask: q\n    type: text\n    prompt: Why?\n", "x.yaml")
    assert summary(survey) == {"questions": 1, "most_questions": 1, "paths": 1, "min_segments": 2,
                               "max_segments": 2, "assumed_pipe_length": 10}


def test_summary_counts_paths_exactly_without_enumerating_them():
    lines = ["survey: many", "flow:"]
    for i in range(60):
        lines += [f"  - ask: q{i}", "    type: text", "    prompt: Why?"]
        if i:
            lines.append(f"    show_if: q{i - 1} is answered")
    result = summary(parse_source("\n".join(lines) + "\n", "many.yaml"))
    assert result["paths"] == 2 ** 59
    assert (result["min_segments"], result["max_segments"]) == (2, 61)


# ---------------------------------------------------------------- specific checks


def diagnose(source: str, path: str = "x.yaml") -> list[tuple[str, int, int]]:
    report = check_source(source, path)
    return [(d.code, d.line, d.col) for d in report.diagnostics]


BASE = "survey: x\n{settings}flow:\n  - ask: recommend\n    type: nps\n    prompt: Reply 0-10. Text STOP to opt out.\n"

SENDERS = [
    # (sender as written in YAML, expected codes)
    ('"+14155552671"', []),
    ('"+15555550100"', []),  # a test range: possible, if not assigned
    ("MG0123456789abcdef0123456789ABCDEF", []),
    ('"whatsapp:+14155552671"', []),
    ('"12345"', []),  # a short code
    ('"+1 415 555 2671"', ["E018"]),
    ('"4155552671"', ["E018"]),
    ('"+1415"', ["E018"]),
    ('"whatsapp:4155552671"', ["E018"]),
    ("MyStore", ["E019"]),
    ('"My Store 1"', ["E019"]),
    ("MyFriendlyStore", ["E018", "E019"]),  # 15 characters
    ("My_Store", ["E018", "E019"]),
    ("Café", ["E018", "E019"]),
]


@pytest.mark.parametrize("sender,codes", SENDERS)
def test_sender_rules(sender, codes):
    assert [c for c, _, _ in diagnose(BASE.format(settings=f"sender: {sender}\n"))] == codes


ACCESS_CODES = [('"@STORE"', []), ("STORE", ["E017"]), ('"@MY STORE"', ["E017"]), ('"@"', ["E017"]),
                ('"@store-2"', [])]


@pytest.mark.parametrize("code,codes", ACCESS_CODES)
def test_access_codes(code, codes):
    assert [c for c, _, _ in diagnose(BASE.format(settings=f"access_code: {code}\n"))] == codes


COUNTRIES = [
    ("[US, CA]", [], []),
    ("[US, UK]", ["E030"], ["did you mean 'GB'?"]),
    ("[us]", ["E030"], ["did you mean 'US'?"]),
    ("[USA]", ["E030"], ["did you mean 'US'?"]),
    ("[XQ]", ["E030"], ["write two capital letters, e.g. US, CA, GB (not UK), DE"]),
    ("US", ["E005"], [None]),
]


@pytest.mark.parametrize("countries, codes, hints", COUNTRIES)
def test_access_code_countries_are_iso_codes_phonenumbers_knows(countries, codes, hints):
    settings = f'access_code: "@STORE"\naccess_code_countries: {countries}\n'
    found = check_source(BASE.format(settings=settings), "flow.yaml").diagnostics
    assert [d.code for d in found] == codes
    assert [d.hint if d.code == "E030" else None for d in found] == hints


OPT_OUT = [
    ("Reply 0-10. Text STOP to opt out.", []),
    ("Reply 0-10. Reply stop to end.", []),
    ("Reply 0-10 or UNSUBSCRIBE.", []),
    ("Reply 0-10. Opt-out: ${l://OptOutURL}", []),
    ("Reply 0-10. Text END to leave.", []),
    ("Reply 0-10. That is the end.", ["W001"]),
    ("Reply 0-10.", ["W001"]),
]


@pytest.mark.parametrize("prompt,codes", OPT_OUT)
def test_opt_out_in_the_first_message(prompt, codes):
    source = f"survey: x\nflow:\n  - ask: a\n    type: nps\n    prompt: \"{prompt}\"\n"
    assert [c for c, _, _ in diagnose(source)] == codes


def test_every_question_that_can_come_first_needs_opt_out_text():
    source = """\
survey: x
flow:
  - ask: a
    type: text
    prompt: Name?
    show_if: Q_RecipientPhoneNumber contains "+1"
  - ask: b
    type: text
    prompt: Age? Text STOP to opt out.
  - ask: c
    type: text
    prompt: Town?
"""
    assert diagnose(source) == [("W001", 5, 13)]


NPS_PROMPTS = [("Reply 0-10.", []), ("From 0 (not likely) to 10 (very likely)?", []),
               ("Zero to ten?", []), ("How likely? Reply 1-10.", ["W002"]), ("How likely?", ["W002"])]


@pytest.mark.parametrize("prompt,codes", NPS_PROMPTS)
def test_nps_prompt_states_the_scale(prompt, codes):
    source = f"survey: x\nflow:\n  - ask: a\n    type: nps\n    prompt: \"{prompt} Text STOP to opt out.\"\n"
    assert [c for c, _, _ in diagnose(source)] == codes


def test_ucs2_look_alike_is_named_at_its_column():
    source = BASE.format(settings="") + "  - end: bye\n    message: It’s “great” — thanks\n"
    report = check_source(source, "x.yaml")
    found = [(d.code, d.line, d.col, d.message.split(" (")[0]) for d in report.diagnostics]
    assert found == [("W004", 7, 16, "'’'"), ("W004", 7, 19, "'“'"), ("W004", 7, 25, "'”'"),
                     ("W004", 7, 27, "'—'")]


def test_ucs2_without_a_look_alike_is_not_blamed_on_the_look_alikes():
    source = BASE.format(settings="") + "  - end: bye\n    message: It’s great 😀\n"
    assert diagnose(source) == []


def test_pipe_length_can_tip_a_message_over_one_segment():
    source = BASE.format(settings="") + f"  - end: bye\n    message: \"${{e://Field/Name}}{'a' * 150}\"\n"
    assert diagnose(source) == []
    report = check_source(source, "x.yaml", assume_pipe_length=11)
    assert [(d.code, d.line, d.col) for d in report.diagnostics] == [("W003", 7, 14)]


def test_names_in_expressions():
    source = """\
survey: x
fields: [Tier]
flow:
  - ask: a
    type: nps
    prompt: Reply 0-10. Text STOP to opt out.
    show_if: Tier == "gold" and Q_RecipientPhoneNumber contains "+1"
  - set: s
    value: a >= 9
  - goto: done
    if: s and b is answered and Teir == "x" and done == 1
  - ask: b
    type: text
    prompt: ${e://Field/Tier} ${e://Field/s}. Text STOP to opt out.
  - end: done
"""
    report = check_source(source, "x.yaml")
    found = [(d.code, d.line, d.col, d.length, d.message, d.hint) for d in report.diagnostics]
    assert found == [
        ("E014", 11, 15, 1, "question 'b' is not answered yet here: it comes later (line 12)",
         "move this after question 'b', or refer to an earlier question"),
        ("E012", 11, 33, 4, "unknown name 'Teir' in the condition of goto", "did you mean 'Tier'?"),
        ("E012", 11, 49, 4, "'done' is an end, not a question, set or field, in the condition of goto",
         "an expression can use questions, sets and fields"),
    ]


def test_without_source_positions_fall_back_to_the_start_of_the_text():
    survey = parse_source(BASE.format(settings="") + "  - end: bye\n    message: Bye <b>now</b>\n", "x.yaml")
    assert [(d.code, d.line, d.col) for d in check_survey(survey)] == [("E008", 7, 14)]
    assert compat_diagnostics(survey) == []


def test_text_form_positions_point_inside_the_string():
    source = 'survey x\n\nask a nps "Reply 0-10. <b>Text</b> STOP to opt out." if a > 1\n'
    assert diagnose(source, "x.survey") == [("E008", 3, 24), ("E014", 3, 57)]


# ---------------------------------------------------------------- never a traceback

_SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}


@settings(max_examples=300, **_SETTINGS)
@given(st.text(), st.sampled_from(["x.yaml", "x.survey"]))
def test_any_text_parses_or_raises_flow_error(text, path):
    try:
        survey = parse_source(text, path)
    except FlowError:
        return
    check_survey(survey, text)
    compat_diagnostics(survey, text)
    summary(survey)


NAMES = st.sampled_from(["a", "b", "c", "done", "s", "Tier", "zz"])
TEXTS = st.lists(st.sampled_from(["Reply 0-10.", "Text STOP", "${q://a/ChoiceTextEntryValue}", "${e://Field/Tier}",
                                  "${e://Field/s}", "${q://zz/Foo}", "${", "<b>", "&nbsp;", "’", "😀", "x" * 170,
                                  "${l://OptOutURL}", "\n"]), max_size=5).map(" ".join)
EXPRESSIONS = st.one_of(NAMES, st.tuples(NAMES, st.sampled_from(["<=", "==", "!="]), st.integers(0, 10)).map(
    lambda t: f"{t[0]} {t[1]} {t[2]}"), NAMES.map(lambda n: f"{n} is answered"))


def element_strategy():
    ask = st.fixed_dictionaries(
        {"ask": NAMES, "type": st.sampled_from(["nps", "choice", "text", "matrix", "Multi-Select"]), "prompt": TEXTS},
        optional={"show_if": EXPRESSIONS, "choices": st.lists(st.sampled_from(["Yes", "No", "yes", "<i>"]), max_size=3),
                  "max_length": st.integers(-1, 5), "attempts": st.integers(-1, 3),
                  "on_invalid": st.sampled_from(["skip", "end", "retry"]), "invalid_message": TEXTS})
    goto = st.fixed_dictionaries({"goto": NAMES}, optional={"if": EXPRESSIONS})
    assign = st.fixed_dictionaries({"set": NAMES, "value": EXPRESSIONS})
    end = st.fixed_dictionaries({"end": NAMES}, optional={"message": TEXTS})
    return st.one_of(ask, goto, assign, end)


SURVEYS = st.fixed_dictionaries(
    {"survey": st.just("gen"), "flow": st.lists(element_strategy(), max_size=8)},
    optional={"fields": st.lists(NAMES, max_size=2), "sender": st.sampled_from(["MyStore", "+14155552671", "x y"]),
              "access_code": st.sampled_from(["@A", "B", "@ C"]), "end_message": TEXTS,
              "remind_after": st.sampled_from(["1h", "3d"]), "expires_after": st.sampled_from(["2h", "48h"])})


@settings(max_examples=300, **_SETTINGS)
@given(SURVEYS, st.booleans())
def test_any_generated_flow_is_checked_without_raising(data, with_source):
    source = yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    survey = parse_source(source, "gen.yaml")
    diagnostics = check_survey(survey, source if with_source else None) + compat_diagnostics(survey, source)
    assert all(d.line >= 1 and d.col >= 1 for d in diagnostics)
    result = summary(survey)
    assert result["paths"] >= 1 and 0 < result["min_segments"] <= result["max_segments"]


# ---------------------------------------------------------------- several files: as the server loads them

ONE = 'survey: {id}\n{extra}flow:\n  - ask: a\n    type: text\n    prompt: "{prompt} Text STOP to opt out."\n'


def test_a_folder_is_checked_as_the_server_loads_it(tmp_path, capsys):
    (tmp_path / "a.yaml").write_text(ONE.format(id="shop", extra='access_code: "@SHOP"\n', prompt="Hi?"))
    (tmp_path / "a.survey").write_text('survey shop\naccess code "@SHOP"\nask a text "Hi? Text STOP to opt out."\n')
    (tmp_path / "b.yaml").write_text(ONE.format(id="shop", extra="", prompt="Hello?"))
    (tmp_path / "c.yaml").write_text(ONE.format(id="other", extra='access_code: "@shop"\n', prompt="Hi?"))
    (tmp_path / "notes.txt").write_text("not a flow")
    assert main(["check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    found = re.findall(r"^(\S+?):(\d+):(\d+): error\[(E\d+)\]", out, re.MULTILINE)
    assert found == [(str(tmp_path / "b.yaml"), "1", "9", "E801"), (str(tmp_path / "c.yaml"), "2", "14", "E802")]
    assert f"is also defined, differently, in {tmp_path / 'a.survey'}" in out  # the same survey in both forms is fine
    assert "already used by survey 'shop'" in out and "notes.txt" not in out


def test_several_files_are_checked_together_and_alone_they_pass(tmp_path, capsys):
    first, second = tmp_path / "x.yaml", tmp_path / "y.yaml"
    first.write_text(ONE.format(id="shop", extra="", prompt="Hi?"))
    second.write_text(ONE.format(id="shop", extra="", prompt="Hello?"))
    assert main(["check", str(first)]) == 0 and main(["check", str(second)]) == 0
    capsys.readouterr()
    assert main(["check", "--json", str(first), str(second)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert [[d["code"] for d in f["diagnostics"]] for f in out["files"]] == [[], ["E801"]]


def test_the_server_and_check_share_the_folder_rules(tmp_path):
    from engine.runtime.registry import compile_dir
    from engine.sms.compat import check_files

    (tmp_path / "a.yaml").write_text(ONE.format(id="shop", extra='access_code: "@SHOP"\n', prompt="Hi?"))
    (tmp_path / "b.yaml").write_text(ONE.format(id="other", extra='access_code: "@SHOP"\n', prompt="Hi?"))
    _, served, _ = compile_dir(tmp_path)
    checked = [d for r in check_files([str(tmp_path)]) for d in r.diagnostics if d.is_error]
    assert served == checked and [d.code for d in served] == ["E802"]


# ---------------------------------------------------------------- impossible logic and clearer messages


def messages(source: str, path: str = "x.survey") -> list[tuple[str, int, int, str, str]]:
    try:
        found = check_source(source, path).diagnostics
    except FlowError as err:  # pragma: no cover - check_source never raises
        found = err.diagnostics
    return [(d.code, d.line, d.col, d.message, d.hint) for d in found]


CHOICE = 'survey x\nask wrong choice "What went wrong? Text STOP to opt out."\n    1 "Delivery"\n    2 "Other"\n'


def test_a_misspelt_label_gets_did_you_mean():
    (found,) = messages(CHOICE + 'ask more text "More?" if wrong == "Othre"\n')
    assert found == ("E027", 5, 35, "question 'wrong' has no choice 'Othre'",
                     "did you mean 'Other'? its choices are 1 Delivery, 2 Other")


def test_labels_match_as_expressions_do_and_empty_text_means_answered():
    source = CHOICE + 'ask more text "More?" if wrong in ["other", 1] or wrong != ""\n'
    assert messages(source) == []


def test_nps_compared_outside_its_range_or_with_text():
    base = 'survey x\nask n nps "Reply 0-10. Text STOP to opt out."\n'
    found = messages(base + 'ask a text "?" if n > 11 or n == "ten"\nask b text "?" if n < 11 and n != -1\n')
    assert [(c, line, col) for c, line, col, _, _ in found] == [("E028", 3, 23), ("E028", 3, 34)]
    assert found[1][4] == "an NPS answer is a whole number from 0 to 10: compare with one, e.g. n >= 9"


FOUR = """\
survey four
ask n nps "Reply 0-10. Text STOP to opt out."
ask low text "Why so low?" if n <= 6
ask mid text "What would make it a 10?" if n in [7, 8]
ask high text "Would you review us?" if n >= 9
ask last text "Anything else?"
"""


def test_too_many_questions_counts_what_one_respondent_is_asked(tmp_path, capsys):
    assert [c for c, *_ in messages(FOUR)] == []  # 5 questions, at most 3 on any path
    path = tmp_path / "four.survey"
    path.write_text(FOUR.replace(' if n in [7, 8]', ''), encoding="utf-8")
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "6:5: warning[W006]: a respondent can be asked 4 questions (of 5)" in out
    assert ": 5 questions (at most 4 on one path), 3 paths, 4-5 SMS segments" in out


def test_a_contradiction_is_reported_where_it_is_written():
    source = ('survey x\nask n nps "Reply 0-10. Text STOP to opt out."\ngoto done if n <= 8\n'
              'ask review text "Review us?"\nask why text "Why so low?" if n <= 6\nend done\n')
    assert messages(source) == [
        ("W005", 5, 1, "question 'why' can never be asked: its show_if is never true here",
         "no answers that lead here satisfy it: fix the condition, or remove the question"),
        ("W009", 5, 31, "the show_if of question 'why' can never be true on any path that reaches it",
         "on every path that reaches it n is 9-10: check the comparison, or the conditions before it")]


def test_a_message_over_1600_characters_is_an_error():
    source = f'survey x\nask a text "Hi. Text STOP to opt out."\nend done "{"x" * 1601}"\n'
    assert [(c, line, col) for c, line, col, _, _ in messages(source)] == [("E029", 3, 10)]
    assert [c for c, *_ in messages(source.replace("x" * 1601, "x" * 1600))] == ["W003"]


CLEARER = [
    # (source, code, line, col, words of the message, words of the hint)
    ('survey x\nask a nps "0-10"\nask b text "?" if a = 3\n', "E001", 3, 21, "'=' is not a comparison", "=="),
    ('survey x\nset s = big spender\n', "E001", 2, 13, "in the value of a set", 'set s = "big spender"'),
    ('survey x\nask a text "Hello\n', "E001", 2, 18, "unterminated string", "column 12"),
    ('survey x\nask a text “Hello”\n', "E001", 2, 12, "curly quote", "straight quotes"),
    ("survey: x\nflow:\n  - ask: a\n    type: text\n    prompt: Hi\n    show_if: a == “x”\n", "E021", 6, 19,
     "curly quote", "straight quotes"),
    ("survey: x\nflow:\n\t- ask: a\n", "E001", 3, 1, "a tab", "use spaces"),
    ("survey: x\nflow:\n  - ask: a\n    type: text\n    prompt: Reply #1 or #2. Text STOP to opt out.\n", "W010",
     5, 19, "'#' starts a YAML comment", '"Reply #1 or #2. Text STOP to opt out."'),
    ('survey x\nask a nps "0-10. Text STOP to opt out."\nset s = promoter\n', "E012", 3, 9, "unknown name", 'quote it: "promoter"'),
]


@pytest.mark.parametrize(("source", "code", "line", "col", "message", "hint"), CLEARER, ids=[c[4] for c in CLEARER])
def test_mistakes_get_messages_that_name_them(source, code, line, col, message, hint):
    path = "x.yaml" if source.startswith("survey:") else "x.survey"
    found = [f for f in messages(source, path) if f[0] == code]
    assert found and found[0][1:3] == (line, col) and message in found[0][3] and hint in found[0][4], found


def test_several_syntax_errors_in_the_text_form_are_reported_together():
    source = ('survey x\nask a nps "Reply 0-10. Text STOP to opt out."\nask b text "?" if a = 3\n'
              'ask c choice "?" if a >=\n    1 "One"\n    2 "Two"\nset d = big spender\nask e text "fine"\n'
              'ask f text "Hello\n')
    assert [(c, line) for c, line, *_ in messages(source)] == [("E001", 3), ("E001", 4), ("E001", 7), ("E001", 9)]
    # an error in the first line stops there: nothing after it can be read as this survey
    assert len(messages("survey\nask a text = 3\n")) == 1
