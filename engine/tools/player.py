"""One respondent's conversation driven by a fake clock: the shell shared by `canvass sim` and
`canvass test`. It calls the same engine.conversation functions as the server."""

from __future__ import annotations

from engine import conversation
from engine.flow import Flow
from engine.responses import typed_answers
from engine.tools.memory_store import MemoryStore


class Player:
    def __init__(self, flow: Flow, channel: str, phone: str, now: float):
        self.flow = flow
        self.flows = conversation.FlowSet([flow])
        self.store = MemoryStore()
        self.channel, self.phone = channel, phone
        self.now = now
        self.last_response: dict | None = None

    @property
    def respondent(self) -> conversation.Respondent:
        return self.store.load(self.channel, self.phone)

    def _take(self, outcome: conversation.Outcome) -> list[str]:
        self.store.save(outcome.respondent)
        self.store.append_responses(outcome.responses)
        if outcome.responses:
            self.last_response = outcome.responses[-1]
        return list(outcome.replies)

    def invite(self, fields: dict[str, str]) -> list[str]:
        """The survey texts first (raises conversation.NotStartable)."""
        return self._take(conversation.start(self.flow, self.respondent, fields, self.now, self.flows))

    def send(self, text: str) -> list[str]:
        """The respondent texts; the replies."""
        return self._take(conversation.receive(self.flows, self.respondent, text, self.now))

    def wait(self, seconds: float) -> list[str]:
        """Advance the clock, firing each due timer at its own time; the messages they sent."""
        until = self.now + seconds
        sent: list[str] = []
        while (due := self.respondent.due_at()) is not None and due <= until:
            self.now = max(self.now, due)
            sent += self._take(conversation.tick(self.flows, self.respondent, self.now))
            if self.respondent.due_at() == due:
                break  # a timer that does not move would fire forever
        self.now = until
        return sent

    def last_session(self) -> tuple[str, dict, dict, list]:
        """(status, typed answers, fields, not_shown) of the open session, else of the last one
        that closed; ("none", ...) before any session started."""
        session = self.respondent.session
        if session is not None:
            return session.status, typed_answers(session, self.flow), session.fields, session.not_shown
        if self.last_response is not None:
            r = self.last_response
            return r["status"], r["answers"], r["fields"], r["not_shown"]
        return "none", {}, {}, []
