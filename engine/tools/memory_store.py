"""An in-memory store for the simulator and tests: the Redis store's methods, without Redis.

Respondents are kept in their stored (dumps) form, so what a shell loads is a fresh copy, as it
would be from Redis.
"""

from __future__ import annotations

from engine.conversation import Respondent


class MemoryStore:
    def __init__(self):
        self._respondents: dict[tuple[str, str], str] = {}
        self._responses: list[dict] = []

    def load(self, channel: str, phone: str) -> Respondent:
        """The respondent for (channel, phone); a new one when none is stored."""
        text = self._respondents.get((channel, phone))
        return Respondent(channel, phone) if text is None else Respondent.loads(text, channel, phone)

    def save(self, respondent: Respondent) -> None:
        self._respondents[(respondent.channel, respondent.phone)] = respondent.dumps()

    def append_responses(self, records: list[dict]) -> None:
        self._responses.extend(records)

    def responses(self, survey_id: str) -> list[dict]:
        return [r for r in self._responses if r["survey"] == survey_id]
