"""The flow diagram: Mermaid and Graphviz output, label escaping, and `canvass graph`."""

import contextlib
import io
import json
import re
import shutil
import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.expr_parse import quote
from dsl.graph import build_graph, to_dot, to_mermaid
from dsl.load import load_file, parse_source
from engine.tools.cli import main

ROOT = Path(__file__).resolve().parent.parent
SURVEYS = sorted((ROOT / "surveys").glob("*.yaml"))
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed (./dev installs it)")

BRANCHING = """\
survey branching
end message "Bye."
ask score nps "Rate us 0-10. Text STOP to opt out."
ask why text "Why?" if score <= 6
set band = "high" if score >= 9 else "low"
goto promoter if band == "high"
goto done
end promoter "Thanks! Please review us."
ask never text "Only reached by a goto" if false
goto nowhere
end done
"""


def test_mermaid_draws_conditions_sets_gotos_and_ends():
    assert to_mermaid(parse_source(BRANCHING, "x.survey")) == """\
flowchart TD
    start(("start"))
    n0["score (nps)<br/>Rate us 0-10. Text STOP to opt out."]
    c1{"if score #lt;= 6"}
    n1["why (text)<br/>Why?"]
    n2[/"set band = #quot;high#quot; if score #gt;= 9 else #quot;low#quot;"/]
    n3{"band == #quot;high#quot;"}
    n5(["end promoter<br/>Thanks! Please review us."])
    c6{"if false"}
    n6["never (text)<br/>Only reached by a goto"]
    n8(["end done<br/>Bye."])
    m0(["nowhere?<br/>(not defined)"])
    start --> n0
    n0 --> c1
    c1 -->|"yes"| n1
    c1 -->|"skip"| n2
    n1 --> n2
    n2 --> n3
    n3 -->|"goto promoter"| n5
    n3 -->|"no"| n8
    c6 -->|"yes"| n6
    c6 -->|"skip"| m0
    n6 --> m0
"""


def test_the_default_end_appears_only_when_the_flow_runs_off_the_list():
    ends = parse_source('survey s\nask q text "Hi"\nend e\n', "x.survey")
    assert "end (default)" not in to_mermaid(ends)
    falls_off = parse_source('survey s\nend message "See you."\nask q text "Hi"\n', "x.survey")
    text = to_mermaid(falls_off)
    assert '    d0(["end (default)<br/>See you."])' in text and text.endswith("    n0 --> d0\n")


def test_an_empty_flow_goes_from_start_to_the_default_end():
    graph = build_graph(parse_source("survey: s\nflow: []\n", "x.yaml"))
    assert graph.edges == [("start", "d0", "")]


NASTY = 'Say "hi" & <b>bye</b> #quot; `code` \\ back | [x] {y} (z) ${e://Field/A}'


def test_mermaid_labels_escape_everything_mermaid_would_read():
    survey = parse_source(f'survey s\nask q text "{NASTY.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"\n',
                          "x.survey")
    line = next(line for line in to_mermaid(survey).splitlines() if line.startswith("    n0"))
    label = re.fullmatch(r'    n0\["(.*)"\]', line).group(1)
    assert '"' not in label and "<b>" not in label and "`" not in label
    assert "#quot;hi#quot; #amp; #lt;b#gt;bye#lt;/b#gt; #35;quot; #96;code#96;" in label


def test_long_prompts_are_shortened_to_one_line():
    survey = parse_source('survey s\nask q text "' + "word " * 30 + 'end\\nnext line"\n', "x.survey")
    question = build_graph(survey).nodes[1]
    assert question.lines[0] == "q (text)"
    assert len(question.lines[1]) == 48 and question.lines[1].endswith("…") and "\n" not in question.lines[1]


@needs_dot
def test_dot_labels_reach_graphviz_intact():
    survey = parse_source('survey s\nask q text "a \\"quote\\" and a \\\\ backslash"\nend e\n', "x.survey")
    done = subprocess.run(["dot", "-Tjson"], input=to_dot(survey), capture_output=True, text=True, timeout=30,
                          check=True)
    labels = {o["name"]: o["label"] for o in json.loads(done.stdout)["objects"]}
    # Graphviz keeps its own escapes (\\ and \n) in the label attribute; the quotes are unescaped.
    assert labels["n0"] == 'q (text)\\na "quote" and a \\\\ backslash'


@needs_dot
@pytest.mark.parametrize("path", SURVEYS, ids=lambda p: p.stem)
def test_dot_renders_every_example(path, tmp_path):
    survey, _ = load_file(path)
    svg = tmp_path / "flow.svg"
    assert main(["graph", str(path), "--svg", str(svg)]) == 0
    text = svg.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert all(f">{q.id} ({q.type})<" in text for q in survey.questions)


def test_graph_prints_mermaid(capsys):
    path = ROOT / "surveys" / "retail-nps.yaml"
    assert main(["graph", str(path)]) == 0
    assert capsys.readouterr().out == to_mermaid(load_file(path)[0])


def test_graph_without_graphviz_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    svg = tmp_path / "flow.svg"
    assert main(["graph", str(ROOT / "surveys" / "retail-nps.yaml"), "--svg", str(svg)]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("flowchart TD")
    assert "Graphviz's `dot` command is not installed" in err and not svg.exists()


@needs_dot
def test_graph_reports_an_svg_that_cannot_be_written(tmp_path, capsys):
    svg = tmp_path / "missing-dir" / "flow.svg"
    assert main(["graph", str(ROOT / "surveys" / "retail-nps.yaml"), "--svg", str(svg)]) == 1
    assert f"cannot write {svg}: `dot` failed" in capsys.readouterr().err


def test_graph_of_a_bad_file_reports_it(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("survey: s\nflow:\n  - ask: q\n    type: text\n    prompt: [\n", encoding="utf-8")
    assert main(["graph", str(bad)]) == 1
    assert main(["graph", str(tmp_path / "missing.survey")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "bad.yaml:" in err and "missing.survey" in err


def test_mermaid_labels_never_look_like_a_style_definition():
    # Mermaid strips the last ';' of any line matching /style.*:\S*#.*;/, entity codes included.
    survey = parse_source('survey s\nask q text "Your style: \\"bold\\" or #plain?"\n', "x.survey")
    line = next(line for line in to_mermaid(survey).splitlines() if line.startswith("    n0"))
    assert not re.search(r"style.*:\S*#.*;", line)
    assert "Your style#58; #quot;bold#quot; or #35;plain?" in line


# ---------------------------------------------------------------- any text: valid XML, or exit 1


def _graph_quietly(path: Path, svg: Path) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        status = main(["graph", str(path), "--svg", str(svg)])
    return status, err.getvalue()


def test_graph_refuses_a_flow_that_fails_check(tmp_path, capsys):
    flow = tmp_path / "bad.survey"
    flow.write_text('survey s\nask q text "Reply\x01 now. Text STOP to opt out."\n', encoding="utf-8")
    svg = tmp_path / "flow.svg"
    assert main(["graph", str(flow), "--svg", str(svg)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and not svg.exists()
    assert "bad.survey:2:18: error[E026]: control character U+0001 in the prompt of question 'q'" in err


def test_graph_refuses_a_flow_that_fails_the_sms_checks_too(tmp_path, capsys):
    flow = tmp_path / "one-way.survey"
    flow.write_text('survey s\nsender "ACME"\nask q text "Why? Text STOP to opt out."\n', encoding="utf-8")
    assert main(["graph", str(flow)]) == 1
    assert "error[E019]" in capsys.readouterr().err


@needs_dot
def test_an_ampersand_entity_in_a_condition_stays_text_in_the_svg(tmp_path):
    flow = tmp_path / "amp.survey"
    flow.write_text('survey s\nask q text "Why? Text STOP to opt out."\nset x = "&#1; & &amp;"\n', encoding="utf-8")
    svg = tmp_path / "flow.svg"
    assert _graph_quietly(flow, svg)[0] == 0
    labels = ["".join(t.itertext()) for t in ElementTree.parse(svg).iter("{http://www.w3.org/2000/svg}text")]
    assert 'set x = "&#1; & &amp;"' in labels


ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=30)


@needs_dot
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=ANY_TEXT, label=ANY_TEXT, literal=ANY_TEXT)
def test_the_svg_is_well_formed_xml_for_any_text(tmp_path, prompt, label, literal):
    flow = tmp_path / "any.yaml"
    value = quote(literal)  # an expression's string literal, characters and all
    flow.write_text(yaml.safe_dump({"survey": "any", "flow": [
        {"ask": "q", "type": "choice", "prompt": "Text STOP to opt out. " + prompt,
         "choices": [label or "x", "other"]},
        {"set": "s", "value": value}]}, allow_unicode=True), encoding="utf-8")
    svg = tmp_path / "any.svg"
    svg.unlink(missing_ok=True)
    status, err = _graph_quietly(flow, svg)
    if status == 0:
        ElementTree.parse(svg)  # raises on anything that is not well-formed XML
    else:
        assert status == 1 and "error[" in err and not svg.exists()
