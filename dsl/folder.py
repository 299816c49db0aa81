"""Flows taken together, as the server loads a folder of them: which files a folder holds, and the
clashes between flows that each pass alone (one survey id for two different surveys, one access
code for two surveys). `canvass check DIR` and the server's registry both ask here, so an author
sees before a reload what the reload would refuse."""

from __future__ import annotations

from pathlib import Path

from dsl import ast
from dsl import diagnostics as codes
from dsl.diagnostics import Diagnostic
from dsl.load import form_of


def flow_files(folder: str | Path) -> list[Path]:
    """The flow files directly in a folder (*.yaml, *.yml, *.survey), in name order."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and form_of(p))


def access_key(code: str) -> str:
    """An access code as respondents' texts are matched against it."""
    return code.strip().casefold()


def access_codes(survey: ast.Survey) -> list[str]:
    """Every access code a survey gives: the default language's, then each translation's."""
    if not survey.access_code:
        return []
    return [survey.access_code, *survey.translations.get("access_code", {}).values()]


def clashes(surveys: list[tuple[str, ast.Survey]]) -> tuple[list[Diagnostic], set[str]]:
    """The diagnostics of flows that clash with one before them (in the order given), and the
    paths of those flows (the server loads none of them). The same survey written in both forms
    (equal ASTs) is one survey, not a clash."""
    found: list[Diagnostic] = []
    refused: set[str] = set()
    by_id: dict[str, tuple[str, ast.Survey]] = {}
    by_code: dict[str, ast.Survey] = {}
    for path, survey in surveys:
        first = by_id.get(survey.id)
        if first is not None and first[1] != survey:
            found.append(codes.DUPLICATE_SURVEY.diagnostic(
                path, survey.spans.get("survey", (survey.line or 1, survey.col or 1)),
                f"survey '{survey.id}' is also defined, differently, in {first[0]}",
                "give each survey its own id, or make both forms say the same", len(survey.id)))
            refused.add(path)
            continue
        if survey.access_code:
            written = access_codes(survey)
            taken = next((by_code[access_key(code)] for code in written
                          if by_code.get(access_key(code), survey).id != survey.id), None)
            if taken is not None:
                found.append(codes.DUPLICATE_ACCESS_CODE.diagnostic(
                    path, survey.spans.get("access_code", (survey.line or 1, survey.col or 1)),
                    f"access code '{survey.access_code}' is already used by survey '{taken.id}'",
                    "every survey needs its own access code (in each of its languages)",
                    len(survey.access_code)))
                refused.add(path)
                continue
            by_code.update(dict.fromkeys(map(access_key, written), survey))
        by_id.setdefault(survey.id, (path, survey))
    return found, refused
