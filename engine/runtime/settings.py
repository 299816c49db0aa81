"""What `canvass serve` is configured with: command-line flags and environment variables."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.records.distributions import FrequencyRule
from engine.redis.store import Replication
from engine.runtime.outbox import Pacing, PacingError
from engine.runtime.twilio import DEFAULT_API_BASE_URL, SANDBOX_NUMBER, SEND_TIMEOUT
from engine.sms.credits import CreditsTableError, Rates

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# a WAIT holds its connection's later commands: well within the 1 s after which a silent
# connection fails its calls (engine.redis.store.REDIS_TIMEOUT)
MAX_WAIT_TIMEOUT_MS = 500
SHIPPED = "shipped"  # --credits shipped: the credits table shipped with Canvass (engine/sms/credits.csv)
TRUE_WORDS = ("1", "true", "yes", "on")
LOOPBACK_NAMES = ("localhost",)
REDIS_HINT = ("To have one: `./dev serve` starts a local Redis with the server, or run "
              "`redis-server engine/redis/redis.conf --dir DATA_DIR`, or set REDIS_URL to a running Redis.")


class ConfigError(Exception):
    """The server must not start; the message says what to set."""


@dataclass(frozen=True)
class Settings:
    flows_dir: Path
    redis_url: str = DEFAULT_REDIS_URL
    database_url: str | None = None  # the records database; None: var/canvass.db (SQLite)
    account_sid: str | None = None
    auth_token: str | None = None
    public_base_url: str | None = None  # the address Twilio calls; signatures cover it
    admin_token: str | None = None
    api_base_url: str = DEFAULT_API_BASE_URL
    messaging_service_sid: str | None = None
    from_number: str | None = None
    insecure: bool = False
    watch: bool = False
    host: str = "127.0.0.1"
    port: int = 8080
    pacing: str = ""  # messages per second per sender (engine.runtime.outbox.Pacing); '' the defaults
    send_timeout: float = SEND_TIMEOUT  # seconds a request to Twilio may take; then its outcome is unknown
    credits: str | None = None  # the credits table: a path, or "shipped"; None or "none": off
    # at most N invitations per number in a period, across distributions; None: no limit
    contact_frequency: FrequencyRule | None = None
    # REDIS_WAIT_REPLICAS / REDIS_WAIT_TIMEOUT_MS: replicas each commit waits for (0: none)
    replication: Replication = Replication()

    @classmethod
    def from_env(cls, args, environ: Mapping[str, str] = os.environ) -> Settings:
        def env(name: str) -> str | None:
            return environ.get(name, "").strip() or None

        frequency = getattr(args, "contact_frequency", None) or env("CANVASS_CONTACT_FREQUENCY")
        try:
            rule = FrequencyRule.parse(frequency) if frequency else None
        except ValueError as err:
            raise ConfigError(f"--contact-frequency / CANVASS_CONTACT_FREQUENCY: {err}") from None
        return cls(
            flows_dir=Path(args.flows),
            redis_url=env("REDIS_URL") or DEFAULT_REDIS_URL,
            database_url=env("DATABASE_URL"),
            account_sid=env("TWILIO_ACCOUNT_SID"),
            auth_token=env("TWILIO_AUTH_TOKEN"),
            public_base_url=env("PUBLIC_BASE_URL"),
            admin_token=env("CANVASS_ADMIN_TOKEN"),
            api_base_url=env("TWILIO_API_BASE_URL") or DEFAULT_API_BASE_URL,
            messaging_service_sid=env("TWILIO_MESSAGING_SERVICE_SID"),
            from_number=env("TWILIO_FROM_NUMBER"),
            insecure=bool(args.insecure) or (env("CANVASS_INSECURE") or "").lower() in TRUE_WORDS,
            watch=bool(args.watch),
            host=args.host,
            port=args.port,
            pacing=env("CANVASS_PACING") or "",
            send_timeout=_seconds(env("CANVASS_SEND_TIMEOUT"), SEND_TIMEOUT, "CANVASS_SEND_TIMEOUT"),
            credits=getattr(args, "credits", None) or env("CANVASS_CREDITS"),
            contact_frequency=rule,
            replication=_replication(env("REDIS_WAIT_REPLICAS"), env("REDIS_WAIT_TIMEOUT_MS")),
        )

    def validate(self) -> list[str]:
        """Warnings to log; ConfigError when the server must not start at all.

        Insecure mode (no signature checks, an open admin API) is only for a developer's
        own machine: it is refused with Twilio credentials set or on an address other
        machines can reach, so it cannot be reached by accident in production."""
        try:
            Pacing(self.pacing)
        except PacingError as err:
            raise ConfigError(f"CANVASS_PACING: {err}") from None
        if self.insecure:
            self._check_insecure_is_local()
        elif not self.auth_token:
            raise ConfigError(
                "TWILIO_AUTH_TOKEN is not set, so webhook signatures cannot be checked. "
                "Set it, or pass --insecure (or CANVASS_INSECURE=1) for local development only.")
        if self.auth_token and not self.admin_token:
            raise ConfigError(
                "TWILIO_AUTH_TOKEN is set but CANVASS_ADMIN_TOKEN is not: the admin API reads every "
                "response and phone number and sends real messages, so it needs its own secret. "
                "Set CANVASS_ADMIN_TOKEN to a long random value (e.g. the output of "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`).")
        self.rates()
        warnings = []
        if self.insecure:
            warnings.append("running insecurely: TWILIO_AUTH_TOKEN is not set, webhook signatures are NOT checked"
                            + ("" if self.admin_token else "; the admin API is open to this machine"))
        elif not self.public_base_url:
            warnings.append("PUBLIC_BASE_URL is not set: signatures are checked against the address "
                            "requests arrive at, which is wrong behind a proxy")
        if self.sandbox:
            warnings.append("no Twilio credentials: starts, reminders and late replies go to the local "
                            "sandbox, not to phones (GET /admin/sandbox/messages; `canvass phone` shows "
                            "its number's)")
        elif not self.can_send:
            warnings.append("TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN missing: surveys can be started by "
                            "access code only; starts and reminders cannot be sent")
        return warnings

    def _check_insecure_is_local(self) -> None:
        why = ("insecure mode (--insecure or CANVASS_INSECURE) checks no webhook signature and opens "
               "the admin API, so it runs only without Twilio credentials on a loopback address")
        credentials = [name for name, value in (("TWILIO_AUTH_TOKEN", self.auth_token),
                                                ("TWILIO_ACCOUNT_SID", self.account_sid)) if value]
        if credentials:
            raise ConfigError(
                f"refusing to start: {why}, and {' and '.join(credentials)} "
                f"{'is' if len(credentials) == 1 else 'are'} set. For production drop --insecure and "
                "CANVASS_INSECURE and set CANVASS_ADMIN_TOKEN; for local development unset the Twilio "
                "credentials.")
        if not is_loopback(self.host):
            raise ConfigError(
                f"refusing to start: {why}, and --host {self.host or '(every interface)'} is not a "
                "loopback address. Use --host 127.0.0.1 (or ::1, localhost), or drop --insecure and "
                "set TWILIO_AUTH_TOKEN and CANVASS_ADMIN_TOKEN.")

    def rates(self) -> Rates | None:
        """The credits table (None: credits are off); ConfigError for one Canvass refuses."""
        if self.credits is None or self.credits.strip().lower() == "none":
            return None  # the self-service model: segments counted, nothing priced or refused
        try:
            return Rates.load(None if self.credits.strip().lower() == SHIPPED else self.credits)
        except CreditsTableError as err:
            raise ConfigError(f"the credits table {err} (set by CANVASS_CREDITS or --credits)") from None

    @property
    def admin_open(self) -> bool:
        """True only in insecure local mode without any Twilio credential and without an admin
        token: the admin API answers without a bearer token (checked again per request, so an
        app built without validate() never opens it beside real credentials)."""
        return (self.insecure and not self.admin_token and not self.auth_token
                and not self.account_sid and is_loopback(self.host))

    @property
    def can_send(self) -> bool:
        return bool(self.account_sid and self.auth_token)

    @property
    def sandbox(self) -> bool:
        """True only in insecure local mode without any Twilio credential: what the server sends
        on its own goes to the local sandbox (twilio.SandboxSender), never to Twilio. Checked
        here, not only by validate(), so an app built without it never fakes a send beside
        real credentials."""
        return (self.insecure and not self.auth_token and not self.account_sid
                and is_loopback(self.host))

    @property
    def sender_number(self) -> str | None:
        """The number server-initiated messages come from when the survey names no sender and
        no Messaging Service is set: TWILIO_FROM_NUMBER, or in the sandbox its own number."""
        return self.from_number or (SANDBOX_NUMBER if self.sandbox else None)

    def public_url(self, path: str) -> str | None:
        return self.public_base_url.rstrip("/") + path if self.public_base_url else None

    def link_base(self) -> str | None:
        """Where the links of link invitations point: PUBLIC_BASE_URL, or, in the local
        sandbox, this server's own address (the links open on this machine); None: unknown."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        return f"http://{self.host}:{self.port}" if self.sandbox else None


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach: 127.0.0.0/8, ::1, localhost."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def redact(url: str) -> str:
    """A Redis URL fit for a log line: its password, if any, replaced by ***."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def _seconds(value: str | None, default: float, name: str) -> float:
    if value is None:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 300:
        raise ConfigError(f"{name} is '{value}': a number of seconds above 0 and at most 300")
    return seconds


def _replication(replicas: str | None, timeout_ms: str | None) -> Replication:
    count, timeout = 0, Replication().timeout_ms
    if replicas is not None:
        if not replicas.isdigit() or int(replicas) > 16:
            raise ConfigError(f"REDIS_WAIT_REPLICAS is '{replicas}': a whole number of replicas "
                              "from 0 (do not wait, the default) to 16")
        count = int(replicas)
    if timeout_ms is not None:
        if not timeout_ms.isdigit() or not 0 < int(timeout_ms) <= MAX_WAIT_TIMEOUT_MS:
            raise ConfigError(f"REDIS_WAIT_TIMEOUT_MS is '{timeout_ms}': whole milliseconds above 0 "
                              f"and at most {MAX_WAIT_TIMEOUT_MS} (a WAIT holds its connection's other "
                              "commands meanwhile)")
        timeout = int(timeout_ms)
    return Replication(count, timeout)
