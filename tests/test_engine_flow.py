"""Compiling surveys into flows: one shared machine per version, a content-hash version, O(1) steps."""

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

from dsl.errors import FlowError
from engine.flow import END_OF_FLOW, flow_from_source, load_flow
from engine.step import open_session, step

ROOT = Path(__file__).resolve().parent.parent
STORE = ROOT / "tests" / "flows" / "good" / "conv_store.yaml"
_spec = importlib.util.spec_from_file_location("flow_cost", ROOT / "bench" / "flow_cost.py")
flow_cost = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(flow_cost)


def test_one_machine_with_a_state_per_element_and_no_models():
    flow = load_flow(STORE)
    machine = flow.machine
    assert list(machine.states) == ["recommend", "reason", "visit", "set#3", "goto#4", "default_end",
                                    "promoter_end", END_OF_FLOW]
    assert machine.models == [] and not machine.auto_transitions
    assert set(machine.events) == {"answer", "pass"}
    assert flow.passing == {"reason", "set#3", "goto#4"}
    assert set(flow.questions) == {"recommend", "reason", "visit"}
    assert set(flow.endings) == {"default_end", "promoter_end", END_OF_FLOW}
    assert (flow.id, flow.form, flow.first) == ("conv-store", "yaml", "recommend")


def test_version_is_a_content_hash_of_the_survey_not_of_its_spelling():
    yaml_flow = load_flow(ROOT / "surveys" / "retail-nps.yaml")
    text_flow = load_flow(ROOT / "surveys" / "retail-nps.survey")
    assert yaml_flow.version == text_flow.version
    assert len(yaml_flow.version) == 12 and int(yaml_flow.version, 16) >= 0
    source = STORE.read_text()
    respaced = flow_from_source("# a comment moves every line\n" + source, "yaml")
    assert respaced.version == load_flow(STORE).version
    reworded = flow_from_source(source.replace("main reason", "biggest reason"), "yaml")
    assert reworded.version != load_flow(STORE).version


def test_the_repr_a_version_hashes_holds_exactly_the_compared_fields():
    import dataclasses

    from dsl import ast as flow_ast

    for cls in vars(flow_ast).values():
        if isinstance(cls, type) and dataclasses.is_dataclass(cls):
            for f in dataclasses.fields(cls):
                assert f.compare == f.repr, f"{cls.__name__}.{f.name}: compare and repr must agree"


def test_flow_from_source_rebuilds_the_same_version_with_its_source():
    flow = load_flow(STORE)
    again = flow_from_source(flow.source, flow.form)
    assert (again.version, again.source, again.form) == (flow.version, flow.source, "yaml")
    assert again.machine is not flow.machine


def test_compile_refuses_a_survey_with_check_errors():
    bad = STORE.read_text().replace("goto: promoter_end", "goto: nowhere")
    with pytest.raises(FlowError) as caught:
        flow_from_source(bad, "yaml", "bad.yaml")
    assert [d.code for d in caught.value.diagnostics] == ["E015"]
    assert caught.value.diagnostics[0].path == "bad.yaml"


def test_compile_accepts_a_survey_with_only_warnings():
    source = STORE.read_text() + "  - end: never\n    message: unreachable\n"
    flow = flow_from_source(source, "yaml", "warned.yaml")
    assert "never" in flow.endings


def test_load_flow_reports_unreadable_files_as_flow_errors(tmp_path):
    with pytest.raises(FlowError):
        load_flow(tmp_path / "missing.yaml")


def _calls_in_one_step(questions: int) -> Counter:
    flow = flow_cost.build_flow(questions)
    session = flow_cost.session_at(flow, 8)
    calls = Counter()

    def profile(frame, event, arg):
        if event == "call":
            calls[(Path(frame.f_code.co_filename).name, frame.f_code.co_name)] += 1
        elif event == "c_call":
            calls[("builtin", getattr(arg, "__qualname__", repr(arg)))] += 1

    sys.setprofile(profile)
    try:
        step(flow, session, "7", flow_cost.NOW)
    finally:
        sys.setprofile(None)
    return calls


def test_a_step_does_the_same_work_on_a_10_and_a_1000_question_flow():
    for questions in (10, 1000):  # fill the caches a step uses (segment counts of its texts)
        _calls_in_one_step(questions)
    assert _calls_in_one_step(10) == _calls_in_one_step(1000)


def test_the_shared_machine_never_gains_models_or_events():
    flow = flow_cost.build_flow(30)
    events, states = dict(flow.machine.events), dict(flow.machine.states)
    replies = {"nps": "7", "choice": "2", "text": "fine"}
    for phone in range(50):
        session = open_session(flow, "sms", f"+1555000{phone:04d}", {"Name": "x"}, 0.0).session
        while session.is_open:
            session = step(flow, session, replies[flow.questions[session.state].kind.name], 1.0).session
    assert flow.machine.models == []
    assert dict(flow.machine.events) == events and dict(flow.machine.states) == states
