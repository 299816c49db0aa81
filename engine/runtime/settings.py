"""What `canvass serve` is configured with: command-line flags and environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.runtime.twilio import DEFAULT_API_BASE_URL

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
TRUE_WORDS = ("1", "true", "yes", "on")


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

    @classmethod
    def from_env(cls, args, environ: Mapping[str, str] = os.environ) -> Settings:
        def env(name: str) -> str | None:
            return environ.get(name, "").strip() or None

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
        )

    def validate(self) -> list[str]:
        """Warnings to log; ConfigError when the server must not start at all."""
        if not self.auth_token and not self.insecure:
            raise ConfigError(
                "TWILIO_AUTH_TOKEN is not set, so webhook signatures cannot be checked. "
                "Set it, or pass --insecure (or CANVASS_INSECURE=1) for local development only.")
        warnings = []
        if not self.auth_token:
            warnings.append("running insecurely: TWILIO_AUTH_TOKEN is not set, webhook signatures are NOT checked")
        elif not self.public_base_url:
            warnings.append("PUBLIC_BASE_URL is not set: signatures are checked against the address "
                            "requests arrive at, which is wrong behind a proxy")
        if not self.admin_token:
            warnings.append("CANVASS_ADMIN_TOKEN is not set: the admin API is "
                            + ("open (insecure mode)" if self.insecure else "closed (every request gets 401)"))
        if not (self.account_sid and self.auth_token):
            warnings.append("TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN missing: surveys can be started by "
                            "access code only; starts and reminders cannot be sent")
        return warnings

    @property
    def can_send(self) -> bool:
        return bool(self.account_sid and self.auth_token)

    def public_url(self, path: str) -> str | None:
        return self.public_base_url.rstrip("/") + path if self.public_base_url else None
