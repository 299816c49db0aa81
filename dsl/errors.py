"""Author-facing diagnostics: a stable code, a position, a message and a hint."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from dsl.characters import FORBIDDEN


@dataclass(frozen=True)
class Diagnostic:
    path: str
    line: int  # 1-based; 0 when the problem belongs to the whole file
    col: int  # 1-based
    code: str  # E### for errors, W### for warnings
    message: str
    hint: str = ""
    length: int = 1  # how many characters the caret underlines
    severity: str = field(default="")

    def __post_init__(self) -> None:
        if not self.severity:
            # The registry builds Diagnostics, so it is imported here rather than at the top.
            from dsl.diagnostics import severity_of

            object.__setattr__(self, "severity", severity_of(self.code))

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def to_json(self) -> dict:
        return asdict(self)

    def render(self, source: str | None = None) -> str:
        where = f"{self.path}:{self.line}:{self.col}" if self.line else self.path
        out = [f"{where}: {self.severity}[{self.code}]: {self.message}"]
        if source is not None and self.line:
            lines = source.split("\n")  # as the readers count lines (splitlines also breaks at \x0b, \x1c...)
            if 0 < self.line <= len(lines):
                # A control character would garble the terminal: show a replacement character instead.
                text = FORBIDDEN.sub("\ufffd", lines[self.line - 1].rstrip("\r")).expandtabs(1)
                if len(text) <= 300:
                    out.append(f"      {text}")
                    out.append("      " + " " * (self.col - 1) + "^" * max(1, self.length))
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)


class FlowError(Exception):
    """Raised when a flow file cannot be turned into a Survey; carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("\n".join(d.render() for d in diagnostics))


def suggest(name: str, candidates) -> str:
    """A 'did you mean' hint for a misspelt name, or ''."""
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""
