"""Every table of the records database, and nothing else: migrations/ creates them.

responses       one row per closed response, keyed by its response id (engine.responses), so
                archiving the same response twice inserts it once. The columns an export or a
                report filters and sorts on are typed; answers and fields are JSON; whatever
                else the engine's response record carries is kept whole in `extra`.
opt_out_events  every opt-out and opt-in as it happened, keyed by its event id (made with the
                commit that changed the respondent), oldest first by `at`.
opt_outs        the current state per channel and number: the latest event's outcome. Starts
                (and later distributions) check it; startup restores Redis from it.
contact_lists   one row per list, its name unique; `fields` the names of the embedded-data fields
                its imports have carried, in the order first seen (for exports and `show`).
contacts        one row per number of a list (E.164, unique in the list): its email, its fields
                (JSON, replaced by each import that has the number), `line_warning` when the
                number may not receive SMS (engine.sms.phones.NO_SMS_LINES), and the import that
                last wrote it (`import_id`: how an import tells a number repeated in its own file).
credit_ledger   credits added (a positive amount) or taken back (negative) by an operator, one row
                each: when, how many, why and by whom (engine.records.credits).
credit_usage    what messages used, one row per day (UTC), survey, distribution ('' for none),
                country (ISO 3166, ZZ unknown) and direction (in, out): messages, segments and
                credits, added to by each flush of a worker's counts (an upsert). The balance is
                the ledger's sum minus the usage's credits.
distributions   one row per distribution: a survey sent to a contact list's numbers at `send_at`
                (its id "DS" + 16 hex digits). `list_name` is kept when the list is deleted
                (`list_id` then becomes null); `quiet_from`/`quiet_to` are "HH:MM" in the
                recipient's local time (from later than to: the window crosses midnight);
                `status` scheduled -> sending -> done, or cancelled; `estimate` what creating it
                estimated (engine.records.distributions.estimate); `mode` 2way (the survey's
                conversation) or link (the invitation `message` carrying each recipient's web
                link, from `sender`, which may be alphanumeric: the survey is answered on the web).
distribution_recipients
                one row per number of a distribution: the contact's email and fields as they were
                at creation, and where its invitation stands (`state`: pending, queued, sent,
                delivered, undelivered, failed, skipped, unknown, cancelled; a state only moves
                forwards), with the skip or failure `reason`, Twilio's message `sid` and
                `error_code`; `not_before`: a pending recipient outside its quiet hours waits until then.
                (phone, updated_at) serves the contact-frequency rule, and the duplicate
                suppression of link invitations (`digest`: the invitation's text, hashed).
web_links       one row per individual link to the survey's web pages (POST /admin/surveys/{id}/links):
                its unguessable `token` (the URL's only part), the `survey`, the E.164 `phone` it
                was made for (or null), the contact's `fields` piped into the survey, and the
                `respondent` id the link answers as (channel web: not a phone number, so no
                phone ever leaves with a response; the token never does either). A link
                distribution's link names it (`distribution`, one link per number) and has an
                opt-out URL of its own (`opt_out`, another unguessable token).
Responses carry the distribution that invited them (`distribution`, from the session's field
distribution_id) and whether they are a preview (`preview`, from the field preview = "1").
Times are timezone-aware UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
)

metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
})

Json = JSON()  # PostgreSQL's json keeps a record's key order (answers in the order given); jsonb would not
Time = DateTime(timezone=True)
Credits = Numeric(18, 4)  # credits are priced per segment with decimals (engine.sms.credits)
# SQLite numbers its rows itself only for an INTEGER PRIMARY KEY
Serial = BigInteger().with_variant(Integer(), "sqlite")

responses = Table(
    "responses", metadata,
    Column("response_id", String(64), primary_key=True),
    Column("survey", String(200), nullable=False),
    Column("version", String(64), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("phone", String(32), nullable=False),
    Column("status", String(32), nullable=False),
    Column("started_at", Time, nullable=False),
    Column("ended_at", Time, nullable=False),
    Column("messages_in", Integer, nullable=False, default=0),
    Column("messages_out", Integer, nullable=False, default=0),
    Column("segments_in", Integer, nullable=False, default=0),
    Column("segments_out", Integer, nullable=False, default=0),
    Column("fields", Json, nullable=False),
    Column("answers", Json, nullable=False),
    Column("extra", Json, nullable=False),
    Column("archived_at", Time, nullable=False),
    Column("distribution", String(32), nullable=True),
    Column("preview", Boolean, nullable=False, default=False, server_default=false()),
    Index(None, "survey", "ended_at"),
    Index(None, "survey", "status", "ended_at"),
    Index(None, "phone"),
    Index(None, "survey", "distribution"),
)

opt_out_events = Table(
    "opt_out_events", metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("channel", String(16), nullable=False),
    Column("phone", String(32), nullable=False),
    Column("opted_out", Boolean, nullable=False),  # False: an opt-in
    Column("how", String(32), nullable=False),  # engine.records.optouts: keyword, carrier_21610, web_page
    Column("at", Time, nullable=False),
    Column("archived_at", Time, nullable=False),
    Index(None, "channel", "phone", "at"),
)

opt_outs = Table(
    "opt_outs", metadata,
    Column("channel", String(16), primary_key=True),
    Column("phone", String(32), primary_key=True),
    Column("opted_out", Boolean, nullable=False),
    Column("how", String(32), nullable=False),
    Column("at", Time, nullable=False),
    Column("event_id", String(64), nullable=False),
    Index(None, "opted_out"),
)

contact_lists = Table(
    "contact_lists", metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("fields", Json, nullable=False),
    Column("created_at", Time, nullable=False),
)

contacts = Table(
    "contacts", metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("list_id", Serial, ForeignKey("contact_lists.id", ondelete="CASCADE"), nullable=False),
    Column("phone", String(32), nullable=False),
    Column("email", String(320), nullable=True),
    Column("fields", Json, nullable=False),
    Column("line_warning", String(32), nullable=True),
    Column("import_id", String(32), nullable=False),
    # the database's clock: an import of a million rows converts no time per row
    Column("created_at", Time, nullable=False, server_default=func.current_timestamp()),
    Column("updated_at", Time, nullable=False, server_default=func.current_timestamp()),
    UniqueConstraint("list_id", "phone"),
    Index(None, "phone"),
)

credit_ledger = Table(
    "credit_ledger", metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("at", Time, nullable=False),
    Column("amount", Credits, nullable=False),
    Column("reason", String(200), nullable=False),
    Column("by", String(100), nullable=True),
)

credit_usage = Table(
    "credit_usage", metadata,
    Column("day", Date, nullable=False),
    Column("survey", String(200), nullable=False),
    Column("distribution", String(32), nullable=False, default="", server_default=""),
    Column("country", String(3), nullable=False),
    Column("direction", String(3), nullable=False),
    Column("messages", Integer, nullable=False),
    Column("segments", Integer, nullable=False),
    Column("credits", Credits, nullable=False),
    PrimaryKeyConstraint("day", "survey", "distribution", "country", "direction"),
    CheckConstraint("direction IN ('in', 'out')", name="direction"),
)

distributions = Table(
    "distributions", metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("survey", String(200), nullable=False),
    Column("list_id", Serial, ForeignKey("contact_lists.id", ondelete="SET NULL"), nullable=True),
    Column("list_name", String(100), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("send_at", Time, nullable=False),
    Column("quiet_from", String(5), nullable=True),
    Column("quiet_to", String(5), nullable=True),
    Column("status", String(16), nullable=False),
    Column("estimate", Json, nullable=False),
    Column("created_at", Time, nullable=False),
    Column("started_at", Time, nullable=True),
    Column("finished_at", Time, nullable=True),
    # 2way: the survey's conversation over SMS/WhatsApp; link: `message` with each recipient's
    # web link, sent from `sender` (or the survey's), which may be an alphanumeric ID
    Column("mode", String(8), nullable=False, server_default="2way"),
    Column("message", Text, nullable=True),
    Column("sender", String(40), nullable=True),
    Index(None, "status", "send_at"),
)

distribution_recipients = Table(
    "distribution_recipients", metadata,
    Column("distribution_id", String(32), ForeignKey("distributions.id", ondelete="CASCADE"),
           primary_key=True),
    Column("phone", String(32), primary_key=True),
    Column("email", String(320), nullable=True),
    Column("fields", Json, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("sid", String(64), nullable=True),
    Column("error_code", Integer, nullable=True),
    Column("updated_at", Time, nullable=False),
    Column("not_before", Time, nullable=True),  # a pending recipient waits for its quiet hours
    Column("digest", String(64), nullable=True),  # a link invitation's text (engine.invitations.digest)
    Index(None, "distribution_id", "state", "phone"),  # the next pending ones, in order
    Index(None, "phone", "updated_at"),
)

web_links = Table(
    "web_links", metadata,
    Column("token", String(64), primary_key=True),
    Column("survey", String(200), nullable=False),
    Column("phone", String(32), nullable=True),
    Column("fields", Json, nullable=False),
    Column("respondent", String(32), nullable=False, unique=True),
    Column("created_at", Time, nullable=False),
    Column("distribution", String(32), nullable=True),  # the link distribution that sent it
    Column("opt_out", String(64), nullable=True),  # the token of its opt-out URL (/o/{opt_out})
    Index(None, "distribution", "phone", unique=True),  # one link per recipient, however often tried
    Index(None, "opt_out", unique=True),
)
