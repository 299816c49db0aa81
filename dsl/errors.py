"""FlowError, which carries every diagnostic found in a flow, and "did you mean" hints.
Diagnostic itself lives with the registry of codes (dsl.diagnostics)."""

from __future__ import annotations

from dsl.diagnostics import Diagnostic

__all__ = ["Diagnostic", "FlowError", "suggest"]  # Diagnostic lives with the registry of codes


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
