"""A flow file's comments, read from its source by line and carried beside the Survey AST, so
`canvass convert` keeps them (the AST holds none: comments are not part of a survey's meaning,
nor of its version hash).

Where a comment has a home, the other form writes it in the same place:
- before the first statement (the top of the file): at the top;
- on the lines above the line that opens a setting or a flow element (blank lines between allowed),
  or at the end of that line: above it, or at the end of the same setting's or element's line;
- after the last statement: at the end.
Any other comment (between the lines of one statement: under an `ask`, inside a choice list, beside
a prompt written on its own line) has no such place: it is `homeless`, and `canvass convert`
reports it rather than drop it silently.

An anchor names what a comment belongs to: "survey" (the survey's line), a setting's attribute
("expires_after", "texts.help"; "texts" is YAML's `texts:` line), "flow" (YAML's `flow:` line), or
an element's index in survey.elements.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import yaml

from dsl import ast
from dsl.positions import SourceMap
from dsl.vocabulary import SETTINGS

Anchor = str | int

_ATTR_BY_KEY = {s.key: s.attr for s in SETTINGS}
_YAML_COMMENT = re.compile(r"(?:^|(?<=[ \t]))#[^\n]*", re.MULTILINE)


class Comment(NamedTuple):
    line: int
    text: str  # from its '#' to the end of the line, trailing spaces left out


@dataclass
class Comments:
    """A file's comments by where they belong; the printers `take` each anchor they write."""

    top: list[Comment] = field(default_factory=list)
    above: dict[Anchor, list[Comment]] = field(default_factory=dict)
    beside: dict[Anchor, Comment] = field(default_factory=dict)
    bottom: list[Comment] = field(default_factory=list)
    homeless: list[Comment] = field(default_factory=list)
    placed: set[Anchor] = field(default_factory=set)  # anchors a printer wrote out

    def take(self, anchor: Anchor) -> tuple[list[str], str | None]:
        """The comments above an anchor and the one beside it, as the printer writes them out."""
        self.placed.add(anchor)
        beside = self.beside.get(anchor)
        return [c.text for c in self.above.get(anchor, ())], beside.text if beside else None

    def anchors(self) -> set[Anchor]:
        return set(self.above) | set(self.beside)

    def not_kept(self) -> list[tuple[Comment, str]]:
        """(comment, why) for each comment the printed form does not hold, in file order."""
        left = [(c, "inside a statement, where the other form has no place for it")
                for c in self.homeless]
        for anchor in self.anchors() - self.placed:
            why = "on a setting that holds its default, which the other form leaves out"
            left += [(c, why) for c in self.above.get(anchor, ())]
            if anchor in self.beside:
                left.append((self.beside[anchor], why))
        return sorted(left, key=lambda item: item[0].line)


def read_comments(survey: ast.Survey, source: str, form: str) -> Comments:
    """The comments of a flow file of either form ("yaml" or "text"), each at its anchor."""
    if form == "yaml":
        found, starts = yaml_comments(source), yaml_anchors(source)
    else:
        found, starts = text_comments(source), _text_anchors(survey)
    lines = source.split("\n")
    # Lines holding a comment after something else, and lines holding anything but a comment.
    inline = {c.line for c, col in found if lines[c.line - 1][: col - 1].strip()}
    content = sorted({n for n, line in enumerate(lines, 1) if line.strip()} - ({c.line for c, _ in found} - inline))
    comments = Comments()
    for comment, _ in found:
        if comment.line in inline:
            anchor = starts.get(comment.line)
            if anchor is None:
                comments.homeless.append(comment)
            else:
                comments.beside[anchor] = comment
            continue
        following = bisect.bisect_right(content, comment.line)
        if following == 0:
            comments.top.append(comment)
        elif following == len(content):
            comments.bottom.append(comment)
        elif content[following] in starts:
            comments.above.setdefault(starts[content[following]], []).append(comment)
        else:
            comments.homeless.append(comment)
    return comments


# ---------------------------------------------------------------- YAML form


def yaml_comments(source: str) -> list[tuple[Comment, int]]:
    """(comment, column) of each comment of a YAML text: a '#' that starts a line or follows a space,
    outside every scalar (a '#' inside a quoted or block text is part of the text)."""
    scalars = [(t.start_mark.index, t.end_mark.index) for t in yaml.scan(source, Loader=yaml.SafeLoader)
               if isinstance(t, yaml.ScalarToken)]
    starts = [start for start, _ in scalars]
    lines = SourceMap(source)
    found = []
    for match in _YAML_COMMENT.finditer(source):
        index = bisect.bisect_right(starts, match.start()) - 1
        if index >= 0 and match.start() < scalars[index][1]:
            continue
        line, col = lines.position(match.start())
        found.append((Comment(line, match.group().rstrip()), col))
    return found


def yaml_anchors(source: str) -> dict[int, Anchor]:
    """The line that opens each setting and element of a YAML flow, by line number."""
    starts: dict[int, Anchor] = {}
    root = yaml.compose(source, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        return starts
    for key_node, value in root.value:
        key = key_node.value
        starts.setdefault(key_node.start_mark.line + 1, _ATTR_BY_KEY.get(key, key))
        if key == "flow" and isinstance(value, yaml.SequenceNode):
            for index, item in enumerate(value.value):
                starts.setdefault(item.start_mark.line + 1, index)
        elif key == "texts" and isinstance(value, yaml.MappingNode):
            for name, _ in value.value:
                starts.setdefault(name.start_mark.line + 1, f"texts.{name.value}")
    return starts


# ---------------------------------------------------------------- text form


def text_comments(source: str) -> list[tuple[Comment, int]]:
    """(comment, column) of each comment of a text flow: a '#' outside a quoted string
    (grammar.lark: COMMENT runs to the end of the line; strings never span lines)."""
    found = []
    for number, line in enumerate(source.split("\n"), 1):
        quote, i = None, 0
        while i < len(line):
            char = line[i]
            if quote:
                if char == "\\":
                    i += 1
                elif char == quote:
                    quote = None
            elif char in "\"'":
                quote = char
            elif char == "#":
                found.append((Comment(number, line[i:].rstrip()), i + 1))
                break
            i += 1
    return found


def _text_anchors(survey: ast.Survey) -> dict[int, Anchor]:
    """The line that opens each setting and element of a text flow (the AST knows where each starts)."""
    starts: dict[int, Anchor] = {survey.line: "survey"}
    for key, (line, _) in survey.spans.items():
        if ":" not in key:  # "title:es" is a translation's line, under the line it translates
            starts.setdefault(line, key)
    for index, element in enumerate(survey.elements):
        starts.setdefault(element.line, index)
    return starts
