"""A survey's flow as a diagram: Mermaid for Markdown, DOT for Graphviz, and `canvass graph`.

Both come from one neutral graph: a node per question, set, conditional goto
and end; a diamond before each question that has a display condition; edges
labelled with the branch they take. An unconditional goto draws no node: the
edge into it goes straight to its target.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from dsl import ast
from dsl.check import check_survey
from dsl.convert import read_for_command
from dsl.diagnostics import Diagnostic
from dsl.expr_parse import to_source
from dsl.vocabulary import DEFAULT_END_MESSAGE

_SHORT = 48  # characters of a prompt or message shown in a node
_DOT_TIMEOUT = 30  # seconds


@dataclass
class Node:
    id: str
    shape: str  # start | question | condition | set | end
    lines: list[str]


@dataclass
class Graph:
    nodes: list[Node] = field(default_factory=list)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (from, to, label)


def _short(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _SHORT else flat[: _SHORT - 1].rstrip() + "…"


class _Builder:
    def __init__(self, survey: ast.Survey):
        self.survey = survey
        self.elements = survey.elements
        self.graph = Graph()
        self.index: dict[str, int] = {}
        for i, element in enumerate(self.elements):
            self.index.setdefault(ast.element_id(element), i)
        self.extra: dict[str, str] = {}  # default end / undefined goto targets -> node id
        self.extra_nodes: list[Node] = []  # drawn after the elements

    def entry(self, i: int) -> str:
        """The node the flow reaches when it comes to element i."""
        if i >= len(self.elements):
            return self.once("d0", "end", ["end (default)", _short(self.end_message(None))])
        element = self.elements[i]
        if isinstance(element, ast.Ask) and element.show_if is not None:
            return f"c{i}"
        if isinstance(element, ast.Goto) and element.cond is None:
            return self.target(element.target)
        return f"n{i}"

    def target(self, name: str) -> str:
        i = self.index.get(name) if name else None
        if i is None or isinstance(self.elements[i], ast.Goto):
            return self.once(f"m{len(self.extra)}", "end", [f"{name}?", "(not defined)"], key=f"goto {name}")
        return self.entry(i)

    def once(self, node_id: str, shape: str, lines: list[str], key: str | None = None) -> str:
        key = key if key is not None else node_id
        if key not in self.extra:
            self.extra[key] = node_id
            self.extra_nodes.append(Node(node_id, shape, lines))
        return self.extra[key]

    def end_message(self, message: str | None) -> str:
        return message if message is not None else (self.survey.end_message or DEFAULT_END_MESSAGE)

    def build(self) -> Graph:
        nodes, edges = self.graph.nodes, self.graph.edges
        nodes.append(Node("start", "start", ["start"]))
        edges.append(("start", self.entry(0), ""))
        for i, element in enumerate(self.elements):
            here = f"n{i}"
            match element:
                case ast.Ask():
                    if element.show_if is not None:
                        nodes.append(Node(f"c{i}", "condition", [f"if {to_source(element.show_if)}"]))
                        edges += [(f"c{i}", here, "yes"), (f"c{i}", self.entry(i + 1), "skip")]
                    nodes.append(Node(here, "question", [f"{element.id} ({element.type})", _short(element.prompt)]))
                    edges.append((here, self.entry(i + 1), ""))
                case ast.Set():
                    nodes.append(Node(here, "set", [f"set {element.name} = {to_source(element.value)}"]))
                    edges.append((here, self.entry(i + 1), ""))
                case ast.Goto() if element.cond is not None:
                    nodes.append(Node(here, "condition", [to_source(element.cond)]))
                    edges += [(here, self.target(element.target), f"goto {element.target}"),
                              (here, self.entry(i + 1), "no")]
                case ast.End():
                    nodes.append(Node(here, "end", [f"end {element.id}", _short(self.end_message(element.message))]))
        nodes += self.extra_nodes
        return self.graph


def build_graph(survey: ast.Survey) -> Graph:
    return _Builder(survey).build()


# ---------------------------------------------------------------- Mermaid

# Mermaid entity codes; `#` first so a literal "#quot;" in a prompt stays literal.
_MERMAID_ESCAPES = str.maketrans({"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "`": "#96;"})
_MERMAID_SHAPES = {"start": '(("{}"))', "question": '["{}"]', "condition": '{{"{}"}}', "set": '[/"{}"/]',
                   "end": '(["{}"])'}


def _mermaid_label(lines: list[str]) -> str:
    label = "<br/>".join(line.translate(_MERMAID_ESCAPES) for line in lines)
    if "style" in label or "classDef" in label:
        # Mermaid drops the last ';' of a line matching /style.*:\S*#.*;/ (a style definition),
        # which would break an entity code; with ':' encoded the line never matches.
        label = label.replace(":", "#58;")
    return label


def to_mermaid(survey: ast.Survey) -> str:
    """The flow as a Mermaid flowchart (top to bottom)."""
    graph = build_graph(survey)
    out = ["flowchart TD"]
    for node in graph.nodes:
        out.append(f"    {node.id}" + _MERMAID_SHAPES[node.shape].format(_mermaid_label(node.lines)))
    for src, dst, label in graph.edges:
        arrow = f'-->|"{_mermaid_label([label])}"|' if label else "-->"
        out.append(f"    {src} {arrow} {dst}")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- Graphviz

_DOT_SHAPES = {"start": 'shape=circle, label="start"', "question": "shape=box, style=rounded",
               "condition": "shape=diamond", "set": "shape=parallelogram",
               "end": "shape=box, style=\"rounded,bold\", peripheries=2"}


def _dot_string(text: str) -> str:
    # Graphviz reads "&name;" in a label as an entity and copies it into the SVG as written, so a
    # literal "&" is written "&amp;" (which every output shows as "&").
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("&", "&amp;")
    return '"' + escaped + '"'


def to_dot(survey: ast.Survey) -> str:
    """The flow as a Graphviz digraph."""
    graph = build_graph(survey)
    out = [f"digraph {_dot_string(survey.id)} {{", '    node [fontname="Helvetica", fontsize=11];',
           '    edge [fontname="Helvetica", fontsize=10];']
    for node in graph.nodes:
        label = "" if node.shape == "start" else f", label={_dot_string(chr(10).join(node.lines))}"
        out.append(f"    {node.id} [{_DOT_SHAPES[node.shape]}{label}];")
    for src, dst, label in graph.edges:
        attrs = f" [label={_dot_string(label)}]" if label else ""
        out.append(f"    {src} -> {dst}{attrs};")
    return "\n".join(out) + "\n}\n"


# ---------------------------------------------------------------- command


def write_svg(dot_source: str, path: str) -> str | None:
    """Render DOT to an SVG file with Graphviz; the problem as text, or None when written."""
    dot = shutil.which("dot")
    if dot is None:
        return "Graphviz's `dot` command is not installed (Debian/Ubuntu: apt install graphviz)"
    try:
        done = subprocess.run([dot, "-Tsvg", "-o", path], input=dot_source, capture_output=True, text=True,
                              timeout=_DOT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        return f"`dot` took longer than {_DOT_TIMEOUT}s"
    except OSError as err:
        return f"cannot run `dot`: {err.strerror or err}"
    if done.returncode != 0:
        return f"`dot` failed: {done.stderr.strip() or f'exit status {done.returncode}'}"
    return None


def run_graph(path: str, svg: str | None = None,
              check: Callable[[ast.Survey, str], list[Diagnostic]] = check_survey) -> int:
    """`canvass graph FILE [--svg OUT]`: print the Mermaid flowchart; with --svg also write an SVG.
    A flow that fails `check` is not drawn: its errors are printed and the status is 1."""
    survey, source, status = read_for_command(path)
    if survey is None:
        return status
    errors = [d for d in check(survey, source) if d.is_error]
    if errors:
        print("\n".join(d.render(source) for d in errors), file=sys.stderr)
        return 1
    sys.stdout.write(to_mermaid(survey))
    if svg:
        problem = write_svg(to_dot(survey), svg)
        if problem:
            print(f"{path}: error: cannot write {svg}: {problem}", file=sys.stderr)
            return 1
    return 0
