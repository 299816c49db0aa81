"""Individual links to a survey's web pages, kept in the records database (table web_links).

A link's token is the URL's only part: secrets.token_urlsafe(TOKEN_BYTES), 128 bits of
randomness, so a link cannot be guessed and carries no personal data. Each link answers as a
respondent of its own on the web channel, under an id that is not a phone number
(respondent_id): that id, never the token nor the phone, is what a response records.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.records.schema import responses, web_links
from engine.records.writes import as_utc

TOKEN_BYTES = 16  # 128 bits
RESPONDENT_PREFIX = "web-"  # a web respondent's id: never a phone number (those start with +)
RESPONDENT_BYTES = 12  # 96 bits: an anonymous visitor's id sits in its cookie


@dataclass(frozen=True)
class Link:
    token: str
    survey: str
    phone: str | None  # the E.164 number it was made for, if any (never shown in a response)
    fields: dict  # piped into the survey as a contact's fields
    respondent: str  # the web respondent id it answers as


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def respondent_id() -> str:
    """A new web respondent's id: fits the phone columns (32 characters), is not a number."""
    return RESPONDENT_PREFIX + secrets.token_urlsafe(RESPONDENT_BYTES)


def is_respondent_id(text: str) -> bool:
    return (text.startswith(RESPONDENT_PREFIX) and len(text) == len(RESPONDENT_PREFIX) + 16
            and all(c.isascii() and (c.isalnum() or c in "-_") for c in text))


async def create(engine: AsyncEngine, survey: str, phone: str | None, fields: dict,
                 now: datetime) -> Link:
    link = Link(new_token(), survey, phone, dict(fields), respondent_id())
    async with engine.begin() as connection:
        await connection.execute(web_links.insert().values(
            token=link.token, survey=survey, phone=phone, fields=link.fields,
            respondent=link.respondent, created_at=as_utc(now)))
    return link


async def find(engine: AsyncEngine, token: str) -> Link | None:
    """The link of `token`, None when there is none (a token of another shape is none too)."""
    if not token or len(token) > web_links.c.token.type.length:
        return None
    async with engine.connect() as connection:
        row = (await connection.execute(select(web_links).where(web_links.c.token == token))).first()
    if row is None:
        return None
    return Link(row.token, row.survey, row.phone, dict(row.fields), row.respondent)


async def answered(engine: AsyncEngine, survey: str, respondent: str) -> bool:
    """Whether a response of the web respondent to the survey is archived."""
    query = select(responses.c.response_id).where(
        responses.c.survey == survey, responses.c.channel == "web", responses.c.phone == respondent).limit(1)
    async with engine.connect() as connection:
        return (await connection.execute(query)).first() is not None
