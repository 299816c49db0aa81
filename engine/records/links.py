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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.records.schema import responses, web_links
from engine.records.writes import DISTRIBUTION_FIELD, as_utc

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
    distribution: str | None = None  # the link distribution that sent it
    opt_out: str | None = None  # its opt-out URL's token (a link distribution's links have one)


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def respondent_id() -> str:
    """A new web respondent's id: fits the phone columns (32 characters), is not a number."""
    return RESPONDENT_PREFIX + secrets.token_urlsafe(RESPONDENT_BYTES)


def is_token(text: str, longest: int) -> bool:
    """Whether `text` has a token's shape (URL-safe Base64, at most `longest` characters): any
    other is no token, and is not asked of the database (PostgreSQL refuses a NUL in a query's
    text, which would read as the database being down)."""
    return 0 < len(text) <= longest and all(c.isascii() and (c.isalnum() or c in "-_") for c in text)


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


async def for_recipient(engine: AsyncEngine, survey: str, distribution: str, phone: str, fields: dict,
                        now: datetime) -> Link:
    """The link of a link distribution's recipient: made on the first call, the same one on every
    later call (a send tried again after a worker died must carry the link it had). The
    distribution's id goes with the fields, so the response names it."""
    found = await _find(engine, (web_links.c.distribution == distribution) & (web_links.c.phone == phone))
    if found is not None:
        return found
    fields = {**fields, DISTRIBUTION_FIELD: distribution}
    link = Link(new_token(), survey, phone, fields, respondent_id(), distribution, new_token())
    try:
        async with engine.begin() as connection:
            await connection.execute(web_links.insert().values(
                token=link.token, survey=survey, phone=phone, fields=link.fields, respondent=link.respondent,
                created_at=as_utc(now), distribution=distribution, opt_out=link.opt_out))
    except IntegrityError:  # another worker made it a moment ago
        found = await _find(engine, (web_links.c.distribution == distribution) & (web_links.c.phone == phone))
        if found is None:
            raise
        return found
    return link


async def find(engine: AsyncEngine, token: str) -> Link | None:
    """The link of `token`, None when there is none (a token of another shape is none too)."""
    if not is_token(token, web_links.c.token.type.length):
        return None
    return await _find(engine, web_links.c.token == token)


async def find_opt_out(engine: AsyncEngine, token: str) -> Link | None:
    """The link whose opt-out URL has `token`, None when there is none."""
    if not is_token(token, web_links.c.opt_out.type.length):
        return None
    return await _find(engine, web_links.c.opt_out == token)


async def _find(engine: AsyncEngine, where) -> Link | None:
    async with engine.connect() as connection:
        row = (await connection.execute(select(web_links).where(where))).first()
    if row is None:
        return None
    return Link(row.token, row.survey, row.phone, dict(row.fields), row.respondent, row.distribution, row.opt_out)


async def answered(engine: AsyncEngine, survey: str, respondent: str) -> bool:
    """Whether a response of the web respondent to the survey is archived."""
    query = select(responses.c.response_id).where(
        responses.c.survey == survey, responses.c.channel == "web", responses.c.phone == respondent).limit(1)
    async with engine.connect() as connection:
        return (await connection.execute(query)).first() is not None
