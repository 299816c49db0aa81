"""Step cost against flow size: µs per step on a 10- and a 1000-question flow, and their ratio.

    python bench/step_bench.py

One shared machine per flow means a step should cost the same on both (target ratio <= 1.2).
Sessions are immutable, so the same step is replayed from the same session many times.
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dsl.load import parse_source  # noqa: E402
from engine.flow import Flow, compile_flow  # noqa: E402
from engine.session import Session  # noqa: E402
from engine.step import open_session, step  # noqa: E402

NOW = 1704099600.0
PHONE = "+15555550100"


def survey_source(questions: int) -> str:
    """A YAML flow of NPS, choice and text questions, with display logic, sets and gotos."""
    lines = ["survey: bench", "fields: [Name]", "flow:"]
    for i in range(1, questions + 1):
        kind = ("nps", "choice", "text")[i % 3]
        lines += [f"  - ask: q{i}", f"    type: {kind}", f"    prompt: Question {i} for ${{e://Field/Name}}"]
        if kind == "choice":
            lines.append("    choices: [Yes, No, Maybe]")
        if i > 1 and i % 2 == 0:
            lines.append(f"    show_if: q{i - 1} is answered or Name == 'x'")
        if i % 10 == 0 and i < questions:
            lines += [f"  - set: s{i}", f"    value: '\"high\" if q{i - 1} != \"\" else \"low\"'"]
            lines += [f"  - goto: q{i + 1}", f"    if: q{i - 1} is answered"]
    lines += ["  - end: done", "    message: Thanks ${e://Field/Name}"]
    return "\n".join(lines) + "\n"


def build(questions: int) -> tuple[Flow, float]:
    """The flow and the seconds compile_flow took (check + machine; YAML parsing not counted;
    the collector off, as in the step timing)."""
    source = survey_source(questions)
    survey = parse_source(source, f"<bench {questions}>", "yaml")
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        flow = compile_flow(survey, source, "yaml")
        return flow, time.perf_counter() - started
    finally:
        gc.enable()


def session_at(flow: Flow, answered: int) -> Session:
    """A session that has answered the first `answered` questions."""
    session = open_session(flow, "sms", PHONE, {"Name": "Ana"}, NOW).session
    replies = {"nps": "7", "choice": "2", "text": "fine"}
    for _ in range(answered):
        session = step(flow, session, replies[flow.questions[session.state].kind.name], NOW).session
    return session


def _time_steps(flow: Flow, session: Session, reply: str, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        step(flow, session, reply, NOW)
    return (time.perf_counter() - started) / count


def per_step_us(cases: dict[int, tuple[Flow, Session]], rounds: int = 7, count: int = 3000) -> dict[int, float]:
    """Best µs per step of each case; rounds alternate between cases so load affects both alike,
    and the collector is off while timing (as timeit does) so heap size does not count."""
    best = dict.fromkeys(cases, float("inf"))
    replies = {"nps": "7", "choice": "2", "text": "fine"}
    gc.disable()
    try:
        for _ in range(rounds):
            for size, (flow, session) in cases.items():
                reply = replies[flow.questions[session.state].kind.name]
                best[size] = min(best[size], _time_steps(flow, session, reply, count))
    finally:
        gc.enable()
    return {size: seconds * 1e6 for size, seconds in best.items()}


def main() -> int:
    cases = {}
    for size in (10, 1000, 2000):
        flow, compile_s = build(size)
        print(f"{size:5d} questions: compile {compile_s * 1000:7.1f} ms, {len(flow.machine.states)} states, "
              f"models attached: {len(flow.machine.models)}")
        if size <= 1000:
            cases[size] = (flow, session_at(flow, 8))
    results = per_step_us(cases)
    for size, us in results.items():
        print(f"{size:5d} questions: {us:6.1f} µs/step")
    print(f"ratio 1000/10: {results[1000] / results[10]:.2f} (target <= 1.2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
