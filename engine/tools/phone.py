"""`canvass phone`: a respondent at a terminal, texting a running server as Twilio would.

Each line read is posted to the server's webhook as an inbound message, signed with
TWILIO_AUTH_TOKEN (when set) exactly as Twilio signs, and the TwiML replies are printed.
Signatures cover the URL, so --server must be the server's PUBLIC_BASE_URL (or the address
it is reached at when PUBLIC_BASE_URL is unset).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET

from engine.runtime.twilio import SIGNATURE_HEADER, sign
from engine.sms.phones import InvalidNumber, to_e164

WEBHOOK_PATH = "/twilio/messages"
TIMEOUT = 10.0


class PhoneError(Exception):
    """The server could not be reached or did not answer with TwiML."""


def replies_in(twiml: str) -> list[str]:
    try:
        root = ET.fromstring(twiml)
    except ET.ParseError:
        raise PhoneError(f"the server did not answer with TwiML: {twiml[:200]!r}") from None
    return ["".join(message.itertext()) for message in root.iter("Message")]


def text_server(url: str, form: dict[str, str], auth_token: str | None) -> list[str]:
    """Post one inbound message; the replies the server sends back."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if auth_token:
        headers[SIGNATURE_HEADER] = sign(auth_token, url, form)
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return replies_in(response.read().decode("utf-8"))
    except urllib.error.HTTPError as err:
        detail = err.read().decode("utf-8", "replace").strip()
        raise PhoneError(f"the server answered {err.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise PhoneError(f"cannot reach {url}: {reason}") from None


def run_phone(args, stdin=None, stdout=None) -> int:
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    try:
        sender = args.from_
        channel = "whatsapp" if sender.lower().startswith("whatsapp:") else "sms"
        number = to_e164(sender.split(":", 1)[1] if channel == "whatsapp" else sender)
        to = to_e164(args.to)
    except InvalidNumber as err:
        print(f"canvass phone: {err}", file=sys.stderr)
        return 2
    prefix = "whatsapp:" if channel == "whatsapp" else ""
    url = args.server.rstrip("/") + WEBHOOK_PATH
    auth_token = os.environ.get("TWILIO_AUTH_TOKEN") or None
    interactive = stdin.isatty()
    if interactive:
        print(f"Texting {url} from {prefix}{number}. Type a message, Ctrl-D to hang up.", file=stdout)
    while True:
        if interactive:
            print("> ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:
            return 0
        body = line.rstrip("\r\n")
        if not interactive:
            print(f"> {body}", file=stdout)  # a script's transcript reads like a conversation
        form = {"MessageSid": "SM" + uuid.uuid4().hex, "AccountSid": os.environ.get("TWILIO_ACCOUNT_SID", ""),
                "From": prefix + number, "To": prefix + to, "Body": body, "NumMedia": "0"}
        try:
            replies = text_server(url, form, auth_token)
        except PhoneError as err:
            print(f"canvass phone: {err}", file=sys.stderr)
            return 1
        for reply in replies:
            print(f"< {reply}", file=stdout, flush=True)
