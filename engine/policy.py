"""Channel and keeping rules: how a message Canvass sends on its own may go, how often a
stranger hears "not currently taking a survey", and how long a respondent's record is kept.

Pure: the respondent, the flow and the time are given, so the server, `canvass sim` and
`canvass test` all apply the same rules.

WhatsApp lets a business send free text only within 24 hours of the respondent's last
message. Outside that window a start or a reminder goes as the survey's approved template
(`whatsapp_template`, a ContentSid) or not at all. SMS has no window.

A session a distribution opened with quiet hours (the session field QUIET_FIELD) gets its
reminder only inside them, in every time zone of the number: a reminder due outside waits
for the window (the session's timer moves there), and is dropped when the window opens only
after the session has expired.

The web channel (the survey's pages at a link) has no keywords, no reminders and no
not-in-survey texts; its session waits for the respondent as long as the link works, not the
survey's expires_after, which is about how long a text conversation may stay open
(web_session_lasts, session_lasts, remind_after).

A survey is active, paused or closed (its status: SURVEY_STATUSES, set by an operator). While
it is not active it opens no session: no start, invitation, access code or web link. A pause
is for a while: the text conversations under way go on (a text conversation cannot wait, its
session expires, and its respondent would lose what they answered), while the web pages wait
(a link keeps its respondent's place, so they come back to it when the survey is active
again). Closing stops accepting answers, as Qualtrics does: an open session of a closed
survey closes as expired at its next message or timer, its answers kept as a partial
response, and the respondent is told the survey is closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.flow import Flow
from engine.session import WEB, Session
from engine.sms.quiet_hours import InvalidQuietHours, QuietHours, reminder_at, time_zones

if TYPE_CHECKING:  # conversation imports this module
    from engine.conversation import Respondent

WHATSAPP_WINDOW = 24 * 3600
NOT_IN_SURVEY_EVERY = 86400  # a number hears "not currently taking a survey" at most this often
KEEP_AFTER = 30 * 86400  # a record with a survey behind it: kept this long after its session
# expires or, between sessions, after its last write
STRANGER_KEEP = 86400  # a record with no survey behind it: kept this long after its last write

TEXT, TEMPLATE, REFUSED = "text", "template", "refused"
QUIET_FIELD = "quiet_hours"  # the session field carrying the quiet hours it was invited with
ACTIVE, PAUSED, CLOSED = "active", "paused", "closed"
SURVEY_STATUSES = (ACTIVE, PAUSED, CLOSED)


def reminder_time(session: Session, phone: str, now: float) -> float | None:
    """When the session's reminder, due now, may go: now, or (invited with quiet hours) when
    the window next holds in every time zone of the number; None when not before the
    session expires."""
    spec = session.fields.get(QUIET_FIELD)
    if not spec:
        return now
    try:
        window = QuietHours.parse(str(spec))
    except InvalidQuietHours:
        return now  # not a window Canvass wrote: a contact's own field of that name
    return reminder_at(window, time_zones(phone), now, session.expires_at)
# A link works until its survey is withdrawn, which this version never does; a session at a
# link still closes (as expired) at some point, so that its record is not kept for ever.
WEB_SESSION_LASTS = 365 * 86400


@dataclass(frozen=True)
class Delivery:
    """How a server-initiated message may go: as free TEXT, as the survey's TEMPLATE, or
    REFUSED; `reason` says why, in words a log line or an author can use."""

    how: str
    reason: str
    template: str | None = None  # the ContentSid, when how is TEMPLATE

    @property
    def refused(self) -> bool:
        return self.how == REFUSED


def in_whatsapp_window(respondent: Respondent, now: float) -> bool:
    last = respondent.last_inbound_at
    return last is not None and now - last < WHATSAPP_WINDOW


def server_initiated(respondent: Respondent, flow: Flow | None, now: float) -> Delivery:
    """How a message Canvass starts (an invitation, a reminder) may reach the respondent."""
    if respondent.channel != "whatsapp":
        return Delivery(TEXT, "SMS has no messaging window")
    if in_whatsapp_window(respondent, now):
        return Delivery(TEXT, "within the 24-hour window of WhatsApp")
    template = flow.survey.content_sid if flow is not None else None
    if template:
        return Delivery(TEMPLATE, "outside the 24-hour window of WhatsApp: the survey's whatsapp_template",
                        template)
    survey = flow.id if flow is not None else "?"
    return Delivery(REFUSED, f"outside the 24-hour window of WhatsApp, and survey '{survey}' has no "
                    "whatsapp_template")


def session_lasts(flow: Flow, channel: str) -> float:
    """Seconds a new session stays open for an answer: the survey's expires_after over SMS and
    WhatsApp; at a web link, WEB_SESSION_LASTS (or the survey's, when longer): a respondent
    opens the link when they choose, and comes back to it later."""
    expires_after = flow.survey.expires_after
    return max(expires_after, WEB_SESSION_LASTS) if channel == WEB else expires_after


def remind_after(flow: Flow, channel: str) -> float | None:
    """Seconds after a message before the one reminder, None for none: the survey's remind_after,
    never on the web (a page cannot text anyone; the link's invitation is the reminder)."""
    return None if channel == WEB else flow.survey.remind_after


def opens_sessions(status: str) -> bool:
    """Whether a survey of `status` takes new respondents (starts, invitations, access codes, links)."""
    return status == ACTIVE


def takes_answers(status: str, channel: str) -> bool:
    """Whether an open session of a survey of `status` takes an answer on `channel`: an active
    survey's always; a paused one's over text (the conversation under way goes on), not on the
    web (the link waits); a closed one's never."""
    return status == ACTIVE or (status == PAUSED and channel != WEB)


def not_active_text(status: str) -> str:
    """The built-in text (engine.texts) that tells a respondent why a survey of `status` refused them."""
    return "survey_closed" if status == CLOSED else "survey_paused"


def may_tell_not_in_survey(respondent: Respondent, now: float) -> bool:
    """At most one "not currently taking a survey" a day per number: each costs a paid
    message, and numbers that text in bulk to run up those costs (SMS pumping) get one."""
    told = respondent.told_not_in_survey_at
    return told is None or now - told >= NOT_IN_SURVEY_EVERY


def keep_for(respondent: Respondent, now: float) -> int | None:
    """Seconds to keep the respondent's record after this write; None: forever.

    - opted out: forever (an opt-out must never be forgotten);
    - a session open: until KEEP_AFTER past its expiry;
    - a survey behind it (last_survey: its help and not-in-survey texts apply between
      sessions): KEEP_AFTER;
    - else a stranger: STRANGER_KEEP, the longest anything it holds matters (when it was
      told it is not in a survey, its WhatsApp window). Never shorter: a worker trusts its
      own last commit of a conversation for minutes (service.Recent), and a record that
      expired and was written again would restart its revision under it.
    """
    if respondent.opted_out:
        return None
    session = respondent.session
    if session is not None:
        return max(1, int(session.expires_at - now)) + KEEP_AFTER
    return KEEP_AFTER if respondent.last_survey else STRANGER_KEEP
