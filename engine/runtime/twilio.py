"""Twilio at the edge: webhook parsing, signature checks, TwiML replies and REST sending
(or, in local development, the sandbox that stands in for it).

Everything Canvass knows about Twilio's wire formats lives here; the rest of the
code deals in channels ("sms" | "whatsapp") and E.164 numbers.
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import logging
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

import aiohttp
from redis.exceptions import RedisError
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import (
    HMAC_SHA1,
    HMAC_SHA256,
    SIGNATURE_HEADER,
    RequestValidator,
    get_signature_algorithm,
)
from twilio.rest import Client

from engine.sms.phones import InvalidNumber, to_e164

if TYPE_CHECKING:
    from engine.redis.store import Store

DEFAULT_API_BASE_URL = "https://api.twilio.com"
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
WHATSAPP_PREFIX = "whatsapp:"
SEND_TIMEOUT = 10.0  # seconds per request to Twilio
UNSUBSCRIBED = 21610  # "Attempt to send to unsubscribed recipient"
SANDBOX_NUMBER = "+15555550000"  # the sandbox's sender, and what `canvass phone` texts by default


class BadWebhook(ValueError):
    """A webhook request Canvass cannot act on (400); the message names what is wrong."""


class SendFailed(Exception):
    """Twilio refused a message or could not be reached.

    `unknown`: the request went and no answer came (a timeout, a dropped connection), so the
    message may have been created; `retryable`: Twilio did not take it but may later (429,
    a 5xx, or the connection could not even be made)."""

    def __init__(self, message: str, code: int | None = None, status: int | None = None,
                 unknown: bool = False, retryable: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.unknown = unknown
        self.retryable = retryable
        self.retry_after = retry_after  # seconds Twilio asked to wait (its Retry-After header)


# ---------------------------------------------------------------- addresses


def split_address(address: str) -> tuple[str, str]:
    """("whatsapp" | "sms", E.164) of a Twilio address such as whatsapp:+15551234567."""
    channel = "sms"
    if address.lower().startswith(WHATSAPP_PREFIX):
        channel, address = "whatsapp", address[len(WHATSAPP_PREFIX):]
    return channel, to_e164(address)


def join_address(channel: str, phone: str) -> str:
    return WHATSAPP_PREFIX + phone if channel == "whatsapp" else phone


# ---------------------------------------------------------------- webhooks


@dataclass(frozen=True)
class Inbound:
    message_sid: str
    channel: str
    phone: str  # the respondent, E.164
    body: str
    to: str = ""  # the address the respondent texted (a late reply is sent from it)


@dataclass(frozen=True)
class DeliveryStatus:
    message_sid: str
    status: str
    error_code: int | None
    channel: str
    phone: str  # the recipient, E.164


def _required(form: Mapping[str, str], *names: str) -> list[str]:
    missing = [name for name in names if name not in form]
    if missing:
        raise BadWebhook(f"the webhook has no {', '.join(missing)}")
    return [form[name] for name in names]


def _address(value: str, what: str) -> tuple[str, str]:
    try:
        return split_address(value)
    except InvalidNumber as err:
        raise BadWebhook(f"{what}: {err}") from None


def parse_inbound(form: Mapping[str, str]) -> Inbound:
    sid, sender, body = _required(form, "MessageSid", "From", "Body")
    if not sid:
        raise BadWebhook("the webhook's MessageSid is empty")
    channel, phone = _address(sender, "From")
    return Inbound(sid, channel, phone, body, form.get("To", ""))


def parse_status(form: Mapping[str, str]) -> DeliveryStatus:
    sid, recipient = _required(form, "MessageSid", "To")
    status = form.get("MessageStatus") or form.get("SmsStatus")
    if not status:
        raise BadWebhook("the status callback has no MessageStatus")
    code = form.get("ErrorCode") or None
    if code is not None and not code.isdigit():
        raise BadWebhook(f"ErrorCode '{code}' is not a number")
    channel, phone = _address(recipient, "To")
    return DeliveryStatus(sid, status, int(code) if code else None, channel, phone)


_DIGESTS = {HMAC_SHA1: "sha1", HMAC_SHA256: "sha256"}  # the algorithms Twilio signs with


def signature_valid(auth_token: str, url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    """True when X-Twilio-Signature matches `url` (the address Twilio called) and the form."""
    signature = headers.get(SIGNATURE_HEADER)
    if not signature:
        return False
    algorithm = get_signature_algorithm(headers.get(SIGNATURE_SETTINGS_HEADER))
    # The exact address first: one HMAC. RequestValidator.validate() also tries the address
    # with and without its port (two HMACs and URL parsing), so it runs only when this fails.
    digest = _DIGESTS.get(algorithm.upper())
    if digest is not None and signature.isascii() and hmac.compare_digest(
            signature_of(auth_token, url, params, digest), signature):
        return True
    return RequestValidator(auth_token).validate(url, params, signature, algorithm)


def signature_of(auth_token: str, url: str, params: Mapping[str, str], digest: str = "sha1") -> str:
    """RequestValidator.compute_signature's result, without its per-field lookups: the HMAC of
    the URL followed by each distinct name+value pair, sorted by name, then value."""
    pairs = params.items()  # a MultiDict's repeated names each come with their own value
    payload = url + "".join(name + value for name, value in sorted(set(pairs)))
    return base64.b64encode(hmac.digest(auth_token.encode(), payload.encode(), digest)).decode()


def sign(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """The X-Twilio-Signature Twilio would send for this request (for test phones and tests)."""
    return RequestValidator(auth_token).compute_signature(url, params)


XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'
# What XML 1.0 cannot carry at all (outside its Char production), not even escaped: C0 controls
# but tab and line breaks, lone surrogates, U+FFFE and U+FFFF. Dropped, so that whatever a
# respondent or a contact list holds, every reply is well-formed and Twilio can read it.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    """`text` without the characters XML 1.0 cannot carry (the same text when it has none)."""
    return NOT_XML.sub("", text) if NOT_XML.search(text) else text
ATTRIBUTE_ENTITIES = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#09;"}  # as ElementTree writes


def twiml(replies: list[str], status_callback: str | None = None) -> str:
    """A TwiML <Response> with one <Message> per reply (none for an empty list), well-formed
    whatever the text: characters XML cannot carry are dropped (see NOT_XML).

    The same text the twilio package's MessagingResponse writes, put together directly:
    building and serialising an element tree cost a twentieth of a webhook (bench/run)."""
    if not replies:
        return XML_DECLARATION + "<Response />"
    opening = "<Message>"
    if status_callback:
        opening = f'<Message action="{escape(xml_text(status_callback), ATTRIBUTE_ENTITIES)}" method="POST">'
    empty = opening[:-1] + " />"
    messages = "".join(f"{opening}{escape(reply)}</Message>" if reply else empty
                       for reply in map(xml_text, replies))
    return f"{XML_DECLARATION}<Response>{messages}</Response>"


# ---------------------------------------------------------------- sending


@dataclass(frozen=True)
class Origin:
    """Where a server-initiated message comes from: a Messaging Service or a sender address."""

    messaging_service_sid: str | None = None
    from_: str | None = None


def origin_for(channel: str, survey_sender: str | None, service_sid: str | None,
               from_number: str | None) -> Origin | None:
    """The survey's own sender, else the environment's Messaging Service, else its number."""
    for candidate in (survey_sender, service_sid, from_number):
        if not candidate:
            continue
        if candidate.startswith("MG"):
            return Origin(messaging_service_sid=candidate)
        if channel == "whatsapp" and not candidate.lower().startswith(WHATSAPP_PREFIX):
            candidate = WHATSAPP_PREFIX + candidate
        return Origin(from_=candidate)
    return None


MAX_RETRY_AFTER = 300.0  # seconds: a longer wait Twilio asks for is taken as this


class _HttpClient(AsyncTwilioHttpClient):
    """The twilio package's aiohttp client with a timeout on every request (it sets none),
    Basic auth sent as a header (aiohttp deprecates the auth= argument twilio passes), and its
    request and response logged only when its logger logs at INFO: the package formats every
    header of both before the logger decides, on every message."""

    def __init__(self, timeout: float | None = None):
        super().__init__(timeout=timeout)
        self._authorization: dict[tuple[str, str], str] = {}

    async def request(self, method, url, params=None, data=None, headers=None, auth=None,
                      timeout=None, allow_redirects=False):
        if auth is not None:
            encoded = self._authorization.get(auth)
            if encoded is None:
                encoded = self._authorization[auth] = aiohttp.encode_basic_auth(*auth)
            headers = {**(headers or {}), "Authorization": encoded}
        return await super().request(method, url, params=params, data=data, headers=headers,
                                     auth=None, timeout=timeout or self.timeout or SEND_TIMEOUT,
                                     allow_redirects=allow_redirects)

    def log_request(self, kwargs) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            super().log_request(kwargs)

    def log_response(self, status_code, response) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            super().log_response(status_code, response)


def _seconds(headers) -> float | None:
    """A Retry-After of whole seconds (the form Twilio sends); None when absent or unreadable."""
    value = (headers or {}).get("Retry-After") if hasattr(headers, "get") else None
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value))) if value is not None else None
    except ValueError:
        return None


class Sender:
    """Sends messages through Twilio's Messages API with the twilio package's async client.

    The request goes through the client's HTTP client with the client's authentication and
    headers (asked of it once) as MessageList.create sends it, but its answer is read for what
    Canvass keeps, the sid or the error, instead of being turned into a MessageInstance:
    building that object (every field, its dates parsed) cost more than the rest of a send
    (bench/run's sender overhead)."""

    def __init__(self, account_sid: str, auth_token: str, api_base_url: str = DEFAULT_API_BASE_URL,
                 status_callback: str | None = None, timeout: float = SEND_TIMEOUT):
        self._http = _HttpClient(timeout=timeout)
        self._client = Client(account_sid, auth_token, http_client=self._http)
        self._client.api.base_url = api_base_url.rstrip("/")
        self._messages = self._client.api.v2010.accounts(account_sid).messages  # its URI
        self._uri = self._client.get_hostname(f"{api_base_url.rstrip('/')}/2010-04-01{self._messages._uri}")
        # what the client's request_async adds to every request, asked of it once (each time,
        # it formats the User-Agent anew from the platform's details)
        self._headers = self._client.get_headers("POST", None)
        self._auth = self._client.get_auth(None)
        # ... with the client's authentication as the header _HttpClient makes of it, so that a
        # send calls the package's own request, one coroutine fewer on each of its steps
        self._headers["Authorization"] = aiohttp.encode_basic_auth(*self._auth)
        self._request = functools.partial(AsyncTwilioHttpClient.request, self._http, "POST", self._uri,
                                          timeout=timeout or SEND_TIMEOUT)
        self.status_callback = status_callback

    async def send(self, channel: str, phone: str, origin: Origin, body: str | None = None,
                   content_sid: str | None = None, content_variables: dict | None = None,
                   distribution: str | None = None) -> str:
        """The new message's sid; SendFailed when Twilio refuses it or cannot be reached."""
        try:
            response = await self._request(data=message_form(
                channel, phone, origin, body, content_sid, content_variables, self.status_callback),
                headers=self._headers)
        except aiohttp.ClientConnectorError as err:  # no connection: the request never went
            raise SendFailed(f"Twilio could not be reached: {err}", retryable=True) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as err:
            raise SendFailed(f"Twilio did not answer: {err or type(err).__name__}", unknown=True) from None
        return _created(response, self._uri)

    async def close(self) -> None:
        await self._http.close()


def message_form(channel: str, phone: str, origin: Origin, body: str | None, content_sid: str | None,
                 content_variables: dict | None, status_callback: str | None) -> bytes:
    """The create-message form, encoded as urlencode would (given a dict, aiohttp would build a
    multipart writer); the fields that repeat from message to message are encoded once."""
    fields = ["To=" + form_value(join_address(channel, phone))]
    if origin.messaging_service_sid:
        fields.append("MessagingServiceSid=" + _encoded(origin.messaging_service_sid))
    if origin.from_:
        fields.append("From=" + _encoded(origin.from_))
    if content_sid:
        fields.append("ContentSid=" + _encoded(content_sid))
        if content_variables:
            fields.append("ContentVariables=" + form_value(json.dumps(content_variables)))
    else:
        fields.append("Body=" + form_value(body or ""))
    if status_callback:
        fields.append("StatusCallback=" + _encoded(status_callback))
    return "&".join(fields).encode()


@lru_cache(maxsize=256)
def _encoded(value: str) -> str:
    """A form value that repeats (a sender, a callback URL), encoded once."""
    return form_value(value)


# what quote_plus percent-encodes: all but letters, digits, _.-~ and the space (which becomes '+')
_FORM_ESCAPED = re.compile(r"[^A-Za-z0-9_.\-~ ]")
_PERCENT = {chr(code): f"%{code:02X}" for code in range(128)}


def _percent(match: re.Match) -> str:
    char = match[0]
    return _PERCENT.get(char) or "".join(f"%{byte:02X}" for byte in char.encode())


def form_value(text: str) -> str:
    """quote_plus(text), the same text, at a fifth of its cost for a message body: quote_plus
    looks up every byte in Python, where most of a text message is letters and spaces."""
    return _FORM_ESCAPED.sub(_percent, text).replace(" ", "+")


def _created(response, uri: str) -> str:
    """The sid of the message Twilio created; SendFailed with its error when it did not."""
    status = response.status_code
    try:
        answer = json.loads(response.text)
    except ValueError:
        answer = None
    if 200 <= status < 300 and isinstance(answer, dict) and isinstance(answer.get("sid"), str):
        return answer["sid"]
    if 200 <= status < 300:  # it says it took it, without a sid to keep: it may have gone
        raise SendFailed(f"Twilio answered {status} without a message sid", status=status, unknown=True)
    error = TwilioRestException(status, uri, *_twilio_error(answer, response.text), method="POST")
    busy = status == 429 or status >= 500
    raise SendFailed(error.msg or "Twilio refused the message", error.code, status, retryable=busy,
                     retry_after=_seconds(response.headers) if status == 429 else None)


def _twilio_error(answer, text: str) -> tuple[str, int | None]:
    """Twilio's error message and code from an error answer, as the twilio package reads them."""
    if isinstance(answer, dict):
        code = answer.get("code")
        return str(answer.get("message") or text[:200]), int(code) if isinstance(code, int) else None
    return text[:200] or "Twilio refused the message", None


class SandboxSender:
    """The local sandbox in place of Twilio (insecure local mode without Twilio credentials,
    see Settings.sandbox): a message is recorded in Redis (Store.sandbox_record), noted as
    delivered, and listed by GET /admin/sandbox/messages, where `canvass phone` finds it.
    Same interface as Sender; its sids are "SB" + 32 hex digits, so none passes for Twilio's."""

    def __init__(self, store: Store, clock: Callable[[], float]):
        self.store, self.clock = store, clock

    async def send(self, channel: str, phone: str, origin: Origin, body: str | None = None,
                   content_sid: str | None = None, content_variables: dict | None = None,
                   distribution: str | None = None) -> str:
        """The new message's sid; SendFailed (outcome unknown) when Redis does not answer."""
        sid, at = "SB" + uuid.uuid4().hex, self.clock()
        message = {"sid": sid, "channel": channel, "to": phone,
                   "from": origin.from_ or origin.messaging_service_sid, "at": at}
        if content_sid:
            message.update(content_sid=content_sid, content_variables=content_variables or {})
        else:
            message["body"] = body or ""
        try:
            await self.store.sandbox_record(message)
            await self.store.record_delivery(channel, phone, sid, "delivered", None, at, distribution)
        except RedisError as err:  # a message the sandbox kept twice shows its sid twice
            raise SendFailed(f"the sandbox could not record the message: {err}", retryable=True) from None
        return sid

    async def close(self) -> None:
        """Nothing to close: the store belongs to the server."""
