"""dsl/diagnostics.py is the one registry of diagnostic codes: the README's table says exactly
what it says, and no module writes a code as a literal."""

from __future__ import annotations

import re
from pathlib import Path

from dsl import diagnostics
from dsl.diagnostics import REGISTRY, Reporter, in_order

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TABLE_HEAD = "| code | severity | meaning |"


def readme_table() -> list[tuple[str, str, str]]:
    """The rows of the README's diagnostics table, read as the user sees them."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(TABLE_HEAD)
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        code, severity, summary = (cell.strip() for cell in line.strip("|").split(" | "))
        rows.append((code, severity, summary))
    return rows


def registry_table() -> str:
    """The table as the README must write it (paste this when a code is added)."""
    rows = [TABLE_HEAD, "|---|---|---|"]
    rows += [f"| {c.code} | {c.severity} | {c.summary} |" for c in REGISTRY.values()]
    return "\n".join(rows)


def test_the_readme_table_is_the_registry():
    assert readme_table() == [(c.code, c.severity, c.summary) for c in REGISTRY.values()]
    assert registry_table() in README.read_text(encoding="utf-8")


def test_codes_are_unique_ordered_and_named_by_severity():
    codes = list(REGISTRY)
    assert codes == sorted(codes, key=lambda c: (c[0] != "E", c))
    for entry in REGISTRY.values():
        assert re.fullmatch(r"[EW]\d{3}", entry.code)
        assert entry.severity == ("error" if entry.code.startswith("E") else "warning")


def test_no_module_writes_a_code_as_a_literal():
    literal = re.compile(r"""["'][EW]\d{3}["']""")
    offenders = []
    # engine/runtime/registry.py still names E801-E803 itself: it is to read them from the registry.
    files = [*(ROOT / "dsl").rglob("*.py"), *(ROOT / "engine").glob("*.py"),
             *(p for folder in ("sms", "questions", "tools") for p in (ROOT / "engine" / folder).rglob("*.py"))]
    for path in files:
        if path.name != "diagnostics.py":
            offenders += [f"{path.relative_to(ROOT)}:{n}" for n, line in
                          enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if literal.search(line)]
    assert offenders == []


def test_the_reporter_fills_the_hint_template_unless_the_call_site_gives_one():
    reporter = Reporter("flow.yaml")
    reporter.report(diagnostics.SEGMENTS, (3, 5), "too long", limit=160)
    reporter.report(diagnostics.SEGMENTS, (1, 2), "too long", "my own hint", length=0)
    first, second = reporter.diagnostics
    assert first.hint == "each segment is billed: keep a message to 160 characters to send it as one"
    assert (second.hint, second.length, second.severity) == ("my own hint", 1, "warning")
    assert in_order(reporter.diagnostics) == [second, first]


def test_every_flow_code_is_shown_by_a_broken_flow():
    golden = (ROOT / "tests" / "flows" / "broken" / "expected.golden").read_text(encoding="utf-8")
    shown = set(re.findall(r"\b[EW]\d{3}\b", golden))
    server_or_bug = {diagnostics.INTERNAL.code} | {c for c in REGISTRY if c.startswith("E8")}
    assert set(REGISTRY) - server_or_bug - shown == set()
