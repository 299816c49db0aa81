"""`canvass test`: every conversation file passes, every negative one fails naming its step,
and malformed files get a clear error with a line number, never a traceback."""

from pathlib import Path

import pytest

from engine.tools.cli import main
from engine.tools.conversation_test import run_file, run_tests

HERE = Path(__file__).resolve().parent
CONVERSATIONS = sorted((HERE / "conversations").glob("*.yaml"))
FAILING = sorted((HERE / "conversations" / "failing").glob("*.yaml"))
SURVEYS = sorted((HERE.parent / "surveys").glob("*.yaml"))

# What each negative file must report (in order).
EXPECTED_FAILURES = {
    "left_over_at_end.yaml": ["after the last step"],
    "no_match.yaml": ["step 2 (expect_match, line 5)", "step 3 (expect, line 6)"],
    "untaken_message.yaml": ["step 1 (wait, line 4)"],
    "wrong_expect.yaml": ["step 3 (expect, line 7)"],
    "wrong_result.yaml": ["result status (line 8)", "result answer 'recommend' (line 9)"],
}


@pytest.mark.parametrize("path", CONVERSATIONS, ids=lambda p: p.name)
def test_conversation_passes(path):
    assert run_file(path) == []


def test_every_example_survey_has_a_conversation_test():
    tested = {line.split("/")[-1].strip() for path in CONVERSATIONS
              for line in path.read_text().splitlines() if line.startswith("flow:")}
    assert {s.name for s in SURVEYS} <= tested


@pytest.mark.parametrize("path", FAILING, ids=lambda p: p.name)
def test_negative_conversation_fails_naming_the_step(path):
    failures = run_file(path)
    assert [f.strip().split(":\n")[0] for f in failures] == EXPECTED_FAILURES[path.name]
    assert all("expected: " in f and "actual:   " in f for f in failures)


def test_failure_shows_expected_against_actual(capsys):
    assert run_tests([str(HERE / "conversations" / "failing" / "wrong_expect.yaml")]) == 1
    out = capsys.readouterr().out
    assert "FAIL " in out and "step 3 (expect, line 7):" in out
    assert 'expected: "What is the reason for your score?"' in out
    assert 'actual:   "What is the main reason for your score?"' in out
    assert out.rstrip().endswith("0 passed, 1 failed")


def test_cli_exit_status(capsys):
    assert main(["test", str(CONVERSATIONS[0])]) == 0
    assert main(["test", str(CONVERSATIONS[0]), str(FAILING[0])]) == 1
    assert "1 passed, 1 failed" in capsys.readouterr().out
    assert main(["test", str(HERE / "conversations")]) == 0  # a directory: the files directly in it
    assert f"{len(CONVERSATIONS)} passed, 0 failed" in capsys.readouterr().out


def test_verbose_prints_the_transcript(capsys):
    assert run_tests([str(HERE / "conversations" / "help.yaml")], verbose=True) == 0
    out = capsys.readouterr().out
    assert '    > "help"' in out and '    < "This is an automated survey.' in out


FLOW = "flow: ../flows/good/conv_store.yaml\n"
MALFORMED = [
    ("", ":1: the file is empty"),
    ("- just a list\n", ":1: the test file must be a mapping"),
    ("steps: []\n", ":1: the test file has no 'flow'"),
    (FLOW + "stepz: []\n", ":2: unknown key 'stepz' in the test file"),
    ("survey: s\nflow: []\n", "this looks like a flow file: `canvass check` checks a flow"),
    (FLOW + "start: later\n", ":2: 'start' must be one of: invite, inbound"),
    (FLOW + "channel: fax\n", ":2: 'channel' must be one of: sms, whatsapp"),
    (FLOW + "steps:\n  - expect: hi\n  - wait: soon\n", ":4: 'soon' is not a duration"),
    (FLOW + "steps:\n  - expect_match: '('\n", ":3: bad regular expression"),
    (FLOW + "steps:\n  - say: hi\n", ":3: unknown key 'say' in step 1"),
    (FLOW + "steps:\n  - send: a\n    expect: b\n", ":3: step 1 must have exactly one of"),
    (FLOW + "steps:\n  - send: [a, b]\n", ":3: 'send' in step 1 must be text"),
    (FLOW + "steps: {send: a}\n", ":2: 'steps' must be a list"),
    (FLOW + "contact: [a]\n", ":2: 'contact' must be a mapping"),
    (FLOW + "result: {answers: {recommend: [4]}}\n", ":2: the expected value of 'recommend'"),
    (FLOW + "result: {not_shown: reason}\n", ":2: 'not_shown' must be a list"),
    (FLOW + "result: {score: 4}\n", ":2: unknown key 'score' in 'result'"),
    (FLOW + "last_message: soon\n", ":2: 'last_message' must be a duration (e.g. 23h, 2d) or never"),
    (FLOW + "start_refused: [a]\n", ":2: 'start_refused' must be text"),
    (FLOW + "steps:\n  - send: 'unclosed\n", ": YAML syntax error"),
    ("flow: ../flows/good/nowhere.yaml\n", ":1: the flow '../flows/good/nowhere.yaml' does not load"),
    ("flow: ../flows/good/nowhere.txt\n", "unknown flow file type"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED, ids=[m for _, m in MALFORMED])
def test_malformed_file_is_a_clear_error(tmp_path, capsys, text, message):
    folder = tmp_path / "conversations"
    folder.mkdir()
    (tmp_path / "flows").symlink_to(HERE / "flows")
    path = folder / "bad.yaml"
    path.write_text(text)
    assert run_tests([str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"ERROR {path}")
    assert message in out and "Traceback" not in out


def test_a_flow_with_errors_shows_its_diagnostics(tmp_path, capsys):
    (tmp_path / "flow.yaml").write_text("survey: x\nflow:\n  - goto: nowhere\n")
    (tmp_path / "t.yaml").write_text("flow: flow.yaml\n")
    assert run_tests([str(tmp_path / "t.yaml")]) == 1
    out = capsys.readouterr().out
    assert "does not load" in out and "flow.yaml:3:" in out and "E015" in out


def test_missing_test_file_and_no_files(tmp_path, capsys):
    assert run_tests([str(tmp_path / "absent.yaml")]) == 1
    assert "cannot read the file" in capsys.readouterr().out
    assert run_tests([str(tmp_path)]) == 1
    assert "no test files given" in capsys.readouterr().out


WHATSAPP = "flow: ../flows/good/conv_store.yaml\nchannel: whatsapp\n"
TEMPLATED = "flow: ../flows/server/templated.yaml\nchannel: whatsapp\n"
WINDOW_FAILURES = [
    (WHATSAPP + "last_message: never\n", "the invitation:", "refused: whatsapp_window"),
    (WHATSAPP + "start_refused: whatsapp_window\n", "start_refused (line 3):", "the survey started"),
    (WHATSAPP + "last_message: 1d\nstart_refused: opted_out\n", "start_refused (line 4):",
     "refused: whatsapp_window"),
    (TEMPLATED + "last_message: 1d\nsteps:\n  - expect_match: delivery\n", "step 1 (expect_match, line 5):",
     "(WhatsApp template HX00000000000000000000000000000001)"),
    (TEMPLATED + "steps:\n  - expect_template: HX00000000000000000000000000000001\n",
     "step 1 (expect_template, line 4):", '"Did your delivery arrive?'),
]


@pytest.mark.parametrize(("text", "where", "actual"), WINDOW_FAILURES, ids=[w for _, w, _ in WINDOW_FAILURES])
def test_the_whatsapp_window_in_a_test_file_fails_where_it_should(tmp_path, text, where, actual):
    folder = tmp_path / "conversations"
    folder.mkdir()
    (tmp_path / "flows").symlink_to(HERE / "flows")
    path = folder / "window.yaml"
    path.write_text(text + ("" if "steps" in text else "steps: []\n"))
    failures = [f for f in run_file(path) if "untaken" not in f]
    assert failures and failures[0].strip().startswith(where)
    assert "actual:   " + actual in failures[0]


DETRACTOR = """\
flow: ../flows/good/conv_store.yaml
contact: {FirstName: Ana}
steps:
  - expect_match: "Reply 0-10"
  - send: "4"
  - expect_match: "main reason"
  - send: "Queues"
  - expect_match: "shop for today"
  - send: "2"
  - expect_match: "Thanks, Ana"
result:
"""
UNKNOWN_IDS = [
    ("  answers: {nsp: null}\n", ":12: 'answers' names 'nsp', which is not a question of the flow",
     "its questions are recommend, reason, visit"),
    ("  answers:\n    recommend: 4\n    visti: Clothing\n", ":14: 'answers' names 'visti'", "did you mean 'visit'?"),
    ("  not_shown: [reason, resaon]\n", ":12: 'not_shown' names 'resaon'", "did you mean 'reason'?"),
]


@pytest.mark.parametrize(("result", "message", "hint"), UNKNOWN_IDS, ids=[u[0].strip() for u in UNKNOWN_IDS])
def test_an_unknown_question_id_in_result_is_an_error(tmp_path, capsys, result, message, hint):
    folder = tmp_path / "conversations"
    folder.mkdir()
    (tmp_path / "flows").symlink_to(HERE / "flows")
    path = folder / "unknown.yaml"
    path.write_text(DETRACTOR + result)
    assert run_tests([str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"ERROR {path}{message}") and hint in out


NUMBERS = [("recommend: 4.0", True), ('recommend: "4"', True), ("recommend: 04", True), ("recommend: 5", False),
           ("recommend: four", False), ("visit: 2", True), ("visit: Clothing", True), ("visit: 2.0", True), ("visit: clothing", False)]


@pytest.mark.parametrize(("answer", "passes"), NUMBERS, ids=[n[0] for n in NUMBERS])
def test_numbers_in_result_compare_as_numbers(tmp_path, answer, passes):
    folder = tmp_path / "conversations"
    folder.mkdir()
    (tmp_path / "flows").symlink_to(HERE / "flows")
    path = folder / "numbers.yaml"
    path.write_text(DETRACTOR + f"  answers: {{{answer}}}\n")
    assert (run_file(path) == []) == passes
