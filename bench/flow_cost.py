"""What a step and a compile cost as a flow grows.

Step: µs per step on a 10- and a 1000-question flow. One shared machine per flow version
means a step must cost the same on both (target ratio <= 1.2). Sessions are immutable, so
the same step is replayed from the same session many times.

Compile: ms to check a survey and build its machine (YAML parsing not counted) at 100 and
1000 questions. It must grow linearly (target ratio <= 11 for ten times the questions).
A server compiles a flow once, on a reload, just after parsing it: so every compile is timed
from cold CPU caches (evicted before it, outside the timing). Timed back to back, the
100-question flow (0.5 MB of new objects, 5 MB at 1000) would run from the warm L2 cache of the compile
before while the 1000-question one cannot, and the ratio would measure the cache's size
(warm: 11.3-11.8, cold: 10.3-10.8, on the 2-core EPYC these run on; the Python bytecodes a
compile executes grow 10.02 times). The warm figures are reported beside, and so is that
count of bytecodes, which no noise or cache moves.

Rounds alternate between sizes so load on the machine affects both alike; the collector
is off while timing (as timeit does) so the heap's size does not count; medians are reported.
"""

import gc
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dsl.load import parse_source
from engine.flow import Flow, compile_flow
from engine.session import Session
from engine.step import open_session, step

NOW = 1704099600.0
PHONE = "+15555550100"
REPLIES = {"nps": "7", "choice": "2", "text": "fine"}


@dataclass(frozen=True)
class CostShape:
    rounds: int = 21
    steps: int = 1000  # steps timed per size per round (about 30 ms)
    compiles: int = 1  # compiles of the larger flow per round (ten times as many of the smaller)


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


def build_flow(questions: int) -> Flow:
    source = survey_source(questions)
    return compile_flow(parse_source(source, f"<bench {questions}>", "yaml"), source, "yaml")


def session_at(flow: Flow, answered: int) -> Session:
    """A session that has answered the first `answered` questions."""
    session = open_session(flow, "sms", PHONE, {"Name": "Ana"}, NOW).session
    for _ in range(answered):
        session = step(flow, session, REPLIES[flow.questions[session.state].kind.name], NOW).session
    return session


class CacheEvictor:
    """Pushes everything out of the CPU caches by writing a buffer twice the size of the
    last-level cache, one byte per 64-byte line."""

    def __init__(self):
        self.buffer = bytearray(2 * _last_level_cache_bytes())
        self.zeros = bytes(len(range(0, len(self.buffer), 64)))

    def __call__(self) -> None:
        self.buffer[::64] = self.zeros


def _last_level_cache_bytes(default: int = 32 << 20) -> int:
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
        sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
    return max(sizes, default=default)


def _seconds_each(work: Callable[[], object], count: int, before: Callable[[], None] | None = None) -> float:
    """Seconds per call of `work`; `before` (untimed) runs before each call when given."""
    gc.collect()
    gc.disable()
    try:
        if before is None:
            started = time.perf_counter()
            for _ in range(count):
                work()
            return (time.perf_counter() - started) / count
        spent = 0.0
        for _ in range(count):
            before()
            started = time.perf_counter()
            work()
            spent += time.perf_counter() - started
        return spent / count
    finally:
        gc.enable()


def _paired(small: tuple, large: tuple, rounds: int) -> tuple[float, float, float]:
    """Median seconds of each case (arguments of _seconds_each) and the median of their
    per-round ratios (large/small).
    Each round times both, one right after the other, so the ratio of a round is taken under
    the same load on the machine; the median drops rounds that a burst of noise hit."""
    smalls, larges = [], []
    for _ in range(rounds):
        smalls.append(_seconds_each(*small))
        larges.append(_seconds_each(*large))
    ratios = [big / little for little, big in zip(smalls, larges, strict=True)]
    return statistics.median(smalls), statistics.median(larges), statistics.median(ratios)


def step_cost(shape: CostShape, sizes: tuple[int, int] = (10, 1000)) -> dict:
    cases = []
    for size in sizes:
        flow = build_flow(size)
        session = session_at(flow, 8)
        reply = REPLIES[flow.questions[session.state].kind.name]
        cases.append((lambda f=flow, s=session, r=reply: step(f, s, r, NOW), shape.steps))
    small, large, ratio = _paired(*cases, shape.rounds)
    return {"us_per_step": {str(sizes[0]): small * 1e6, str(sizes[1]): large * 1e6},
            "ratio": ratio, "target": 1.2}


def bytecodes(work: Callable[[], object]) -> int:
    """How many Python bytecodes one call of `work` executes (sys.settrace opcode events)."""
    count = 0

    def on_opcode(frame, event, arg):
        nonlocal count
        if event == "opcode":
            count += 1
        return on_opcode

    def on_call(frame, event, arg):
        frame.f_trace_opcodes = True
        return on_opcode

    work()  # once untraced, so one-off work (caches filling) is not counted
    sys.settrace(on_call)
    try:
        work()
    finally:
        sys.settrace(None)
    return count


def compile_cost(shape: CostShape, sizes: tuple[int, int] = (100, 1000)) -> dict:
    cases = []
    for size in sizes:
        source = survey_source(size)
        survey = parse_source(source, f"<bench {size}>", "yaml")
        count = shape.compiles * sizes[1] // size  # the same number of questions compiled per case
        cases.append((lambda s=survey, src=source: compile_flow(s, src, "yaml"), count))
    work = [bytecodes(compile_case) for compile_case, _ in cases]
    rounds = shape.rounds
    evict = CacheEvictor()
    small, large, ratio = _paired(*((work, count, evict) for work, count in cases), rounds)
    warm_small, warm_large, warm_ratio = _paired(*cases, rounds)
    return {"ms_per_compile": {str(sizes[0]): small * 1e3, str(sizes[1]): large * 1e3},
            "ratio": ratio, "target": 11.0,
            "warm": {"ms_per_compile": {str(sizes[0]): warm_small * 1e3, str(sizes[1]): warm_large * 1e3},
                     "ratio": warm_ratio},
            # The same compiles counted in Python bytecodes run: free of noise and of caches
            # (work done inside C calls, dict and set operations, regexes, is not counted).
            "bytecodes": {str(sizes[0]): work[0], str(sizes[1]): work[1]}, "bytecode_ratio": work[1] / work[0]}
