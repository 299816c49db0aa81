"""One respondent's conversation driven by a fake clock: the shell shared by `canvass sim` and
`canvass test`. It calls the same engine.conversation functions as the server, so the core's
channel rules (engine.policy: the WhatsApp window and template, the once-a-day not-in-survey
reply) apply here as they do over the wire."""

from __future__ import annotations

from dataclasses import dataclass

from engine import conversation
from engine.events import Event
from engine.flow import Flow
from engine.responses import typed_answers
from engine.tools.memory_store import MemoryStore


@dataclass(frozen=True)
class Template:
    """A WhatsApp template sent instead of the free text, outside the 24-hour window."""

    content_sid: str

    def __str__(self) -> str:
        return f"[WhatsApp template {self.content_sid}]"


Message = str | Template


class Player:
    def __init__(self, flow: Flow, channel: str, phone: str, now: float,
                 last_inbound_at: float | None = None, language: str | None = None):
        """`last_inbound_at`: when the respondent last texted before the clock starts (it opens
        WhatsApp's 24-hour window); None for never. `language`: the respondent's (an invitation
        opens the session in it; None: as the contact's fields say)."""
        self.flow = flow
        self.language = language
        self.flows = conversation.FlowSet([flow])
        self.store = MemoryStore()
        self.channel, self.phone = channel, phone
        self.now = now
        self.last_response: dict | None = None
        self.events: list[Event] = []  # those of the latest call
        if last_inbound_at is not None:
            self.store.save(conversation.Respondent(channel, phone, last_inbound_at=last_inbound_at))

    @property
    def respondent(self) -> conversation.Respondent:
        return self.store.load(self.channel, self.phone)

    def _take(self, outcome: conversation.Outcome) -> list[Message]:
        self.store.save(outcome.respondent)
        self.store.append_responses(outcome.responses)
        self.events += outcome.events
        if outcome.responses:
            self.last_response = outcome.responses[-1]
        if outcome.template and outcome.replies:
            return [Template(outcome.template)]
        return list(outcome.replies)

    def invite(self, fields: dict[str, str]) -> list[Message]:
        """The survey texts first (raises conversation.NotStartable)."""
        self.events = []
        return self._take(conversation.start(self.flow, self.respondent, fields, self.now, self.flows,
                                             language=self.language))

    def send(self, text: str) -> list[Message]:
        """The respondent texts; the replies."""
        self.events = []
        return self._take(conversation.receive(self.flows, self.respondent, text, self.now))

    def wait(self, seconds: float) -> list[Message]:
        """Advance the clock, firing each due timer at its own time; the messages they sent."""
        self.events = []
        until = self.now + seconds
        sent: list[Message] = []
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
