"""`canvass sim`: the REPL shell over the engine, driven as a script."""

from __future__ import annotations

import io

import pytest

from engine.tools.cli import main
from engine.tools.conversation_test import run_tests

FLOW = """\
survey: sim-check
remind_after: 2h
remind_message: Still there? Reply 0-10.
expires_after: 1d
flow:
  - ask: score
    type: nps
    prompt: Hi ${e://Field/FirstName}! How likely are you to recommend us? Reply 0-10. Text STOP to opt out.
  - ask: pick
    type: choice
    prompt: Which store?
    choices: [North, South]
"""


@pytest.fixture
def flow(tmp_path):
    path = tmp_path / "flows" / "sim-check.yaml"
    path.parent.mkdir()
    path.write_text(FLOW)
    return path


def run(monkeypatch, capsys, argv, script):
    monkeypatch.setattr("sys.stdin", io.StringIO(script))
    code = main(["sim", *argv])
    return code, capsys.readouterr()


def test_script_plays_the_conversation_with_segment_counts(monkeypatch, capsys, flow):
    code, out = run(monkeypatch, capsys, [str(flow), "--field", "FirstName=Ana"], "7\nnorth\n:state\n")
    assert code == 0
    assert "< Hi Ana! How likely are you to recommend us? Reply 0-10. Text STOP to opt out." in out.out
    assert "[GSM-7, 1 segment," in out.out
    assert "< Which store?\n  1. North\n  2. South" in out.out
    assert "status:     complete (no open session)" in out.out
    assert "answers:    score=7, pick=North" in out.out


def test_wait_fires_the_reminder_then_expiry(monkeypatch, capsys, flow):
    code, out = run(monkeypatch, capsys, [str(flow)], ":wait 3h\n:wait 1d\nhello\n:state\n")
    assert code == 0
    assert "< Still there? Reply 0-10." in out.out
    assert "< You are not currently taking a survey." in out.out
    assert "status:     expired" in out.out


def test_save_writes_a_conversation_test_that_passes(monkeypatch, capsys, flow, tmp_path):
    saved = tmp_path / "tests" / "saved.yaml"
    saved.parent.mkdir()
    code, out = run(monkeypatch, capsys, [str(flow), "--field", "FirstName=Ana"],
                    f"11\n8\n:wait 3h\n2\n:save {saved}\n")
    assert code == 0 and f"saved 9 steps to {saved}" in out.out
    text = saved.read_text()
    assert "flow: ../flows/sim-check.yaml" in text and "status: complete" in text
    assert run_tests([str(saved)]) == 0
    # the saved file pins the behaviour down: change an expectation and it fails
    saved.write_text(text.replace("pick: South", "pick: North"))
    assert run_tests([str(saved)]) == 1


def test_inbound_start_uses_the_access_code(monkeypatch, capsys, tmp_path):
    path = tmp_path / "code.yaml"
    path.write_text(FLOW.replace("flow:\n", 'access_code: "@SIM"\nflow:\n'))
    code, out = run(monkeypatch, capsys, [str(path), "--start", "inbound", "--phone", "+1 415 555 2671"],
                    "@sim\n:state\n")
    assert code == 0
    assert "(text the access code @SIM to start)" in out.out
    assert "How likely are you" in out.out
    assert "Q_RecipientPhoneNumber=+14155552671" in out.out


def test_reset_quit_and_unknown_commands(monkeypatch, capsys, flow):
    code, out = run(monkeypatch, capsys, [str(flow)], "5\n:reset\n:bogus\n:wait soon\n:quit\n:state\n")
    assert code == 0
    assert out.out.count("< Hi ! How likely") == 2
    assert "unknown command :bogus" in out.out
    assert "usage: :wait DURATION" in out.out
    assert "status:" not in out.out  # nothing after :quit runs


@pytest.mark.parametrize("argv, code, message", [
    (["--field", "NoEquals"], 2, "--field wants NAME=VALUE"),
    (["--phone", "not a number"], 2, "canvass sim:"),
])
def test_bad_options_are_usage_errors(monkeypatch, capsys, flow, argv, code, message):
    got, out = run(monkeypatch, capsys, [str(flow), *argv], "")
    assert got == code and message in out.err


def test_a_broken_flow_shows_diagnostics_not_a_traceback(monkeypatch, capsys, tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("survey: x\nflow:\n  - ask: q\n    type: slider\n    prompt: Hi\n")
    code, out = run(monkeypatch, capsys, [str(path)], "")
    assert code == 1 and "error[E007]" in out.err and "Traceback" not in out.err
