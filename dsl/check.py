"""Language checks on a parsed Survey (names, references, gotos, duplicates, reachability)."""

from __future__ import annotations

from dsl import ast
from dsl.errors import Diagnostic


def check_survey(survey: ast.Survey) -> list[Diagnostic]:
    """Every language diagnostic for a survey, errors and warnings, in file order."""
    return []
