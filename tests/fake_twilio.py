"""Twilio, faked from both sides: its Messages API (records every request, answers as Twilio
does) and a respondent's phone (sends webhooks signed as Twilio signs them)."""

from __future__ import annotations

import base64
import itertools
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from aiohttp import web

from engine.runtime.twilio import sign

ACCOUNT_SID = "AC" + "1" * 32
AUTH_TOKEN = "test-auth-token"
PUBLIC_BASE_URL = "https://canvass.example.com"  # as if behind a proxy: signatures cover this
UNSUBSCRIBED = (21610, "Attempt to send to unsubscribed recipient")


@dataclass
class SentMessage:
    account_sid: str
    form: dict[str, str]
    username: str  # the Basic auth user the client sent

    @property
    def to(self) -> str:
        return self.form["To"]

    @property
    def body(self) -> str | None:
        return self.form.get("Body")


@dataclass
class FakeTwilio:
    account_sid: str
    auth_token: str
    messages: list[SentMessage] = field(default_factory=list)
    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)  # To -> (error code, message)
    base_url: str = ""  # where it listens, once started
    _sids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def bodies(self, to: str | None = None) -> list[str | None]:
        return [m.body for m in self.messages if to is None or m.to == to]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self._create)
        return app

    def _authorised(self, request: web.Request) -> str | None:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return None
        user, _, password = base64.b64decode(encoded).decode().partition(":")
        return user if (user, password) == (self.account_sid, self.auth_token) else None

    async def _create(self, request: web.Request) -> web.Response:
        user = self._authorised(request)
        if user is None:
            return self._error(401, 20003, "Authenticate")
        form = {key: value for key, value in (await request.post()).items()}
        account = request.match_info["account"]
        self.messages.append(SentMessage(account, form, user))
        if "To" not in form or not ({"From", "MessagingServiceSid"} & form.keys()):
            return self._error(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required")
        if form["To"] in self.refuse:
            return self._error(400, *self.refuse[form["To"]])
        sid = f"SM{next(self._sids):032x}"
        return web.json_response({
            "sid": sid, "account_sid": account, "to": form["To"], "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"), "body": form.get("Body"),
            "status": "queued", "num_segments": "1", "direction": "outbound-api",
            "api_version": "2010-04-01", "date_created": "Thu, 30 Jul 2015 20:12:31 +0000",
            "date_updated": "Thu, 30 Jul 2015 20:12:31 +0000", "date_sent": None, "price": None,
            "error_code": None, "error_message": None, "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
        }, status=201)

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        return web.json_response({"code": code, "message": message, "status": status,
                                  "more_info": f"https://www.twilio.com/docs/errors/{code}"}, status=status)


def replies_of(twiml: str) -> list[str]:
    root = ET.fromstring(twiml)
    assert root.tag == "Response"
    return ["".join(message.itertext()) for message in root.findall("Message")]


class Phone:
    """A respondent texting the server through (a stand-in for) Twilio: signed webhooks."""

    _sids = itertools.count(1)

    def __init__(self, client, number: str, channel: str = "sms", auth_token: str = AUTH_TOKEN):
        self.client, self.number, self.channel, self.auth_token = client, number, channel, auth_token

    @property
    def address(self) -> str:
        return "whatsapp:" + self.number if self.channel == "whatsapp" else self.number

    def form(self, body: str, sid: str | None = None) -> dict[str, str]:
        return {"MessageSid": sid or f"SM{next(self._sids):032x}", "AccountSid": ACCOUNT_SID,
                "From": self.address, "To": "+15550000000", "Body": body, "NumMedia": "0"}

    async def post(self, form: dict[str, str], path: str = "/twilio/messages", signature: str | None = None):
        if signature is None:
            signature = sign(self.auth_token, PUBLIC_BASE_URL + path, form)
        return await self.client.post(path, data=form, headers={"X-Twilio-Signature": signature})

    async def send(self, body: str, sid: str | None = None) -> list[str]:
        response = await self.post(self.form(body, sid))
        assert response.status == 200, await response.text()
        assert response.content_type == "application/xml"
        return replies_of(await response.text())
