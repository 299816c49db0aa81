"""`canvass phone`: a respondent at a terminal, texting a running server as Twilio would.

Each line read is posted to the server's webhook as an inbound message, signed with
TWILIO_AUTH_TOKEN (when set) exactly as Twilio signs, and the TwiML replies are printed.
Signatures cover the URL, so --server (default: CANVASS_SERVER, else http://127.0.0.1:8080)
must be the server's PUBLIC_BASE_URL (or the address it is reached at when PUBLIC_BASE_URL
is unset).

While it waits for a line it watches the server's local sandbox (GET /admin/sandbox/messages,
when the server runs without Twilio) and prints what the server sends this number on its own
initiative (a start from the admin API, a reminder) as it arrives.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET

from engine.runtime.twilio import SIGNATURE_HEADER, sign
from engine.sms.phones import InvalidNumber, to_e164
from engine.tools.distributions import DEFAULT_SERVER

WEBHOOK_PATH = "/twilio/messages"
SANDBOX_PATH = "/admin/sandbox/messages"
TIMEOUT = 10.0
POLL_INTERVAL = 0.5  # seconds between two looks at the sandbox


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


class SandboxWatch:
    """The messages the server's sandbox holds for one number, each handed out once."""

    def __init__(self, server: str, channel: str, number: str, admin_token: str | None = None):
        query = urllib.parse.urlencode({"to": number})
        self.url = f"{server.rstrip('/')}{SANDBOX_PATH}?{query}"
        self.channel, self.admin_token = channel, admin_token
        self.off = False  # the server has no sandbox (it sends through Twilio): stop looking
        self._seen: set[str] = set()

    def _fetch(self) -> list[dict]:
        headers = {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}
        try:
            with urllib.request.urlopen(urllib.request.Request(self.url, headers=headers),
                                        timeout=TIMEOUT) as response:
                messages = json.loads(response.read())["messages"]
        except urllib.error.HTTPError as err:
            self.off = err.code in (401, 404)  # no sandbox, or not ours to read
            return []
        except (urllib.error.URLError, TimeoutError, OSError, ValueError, KeyError):
            return []  # the server is restarting or busy: look again next time
        return [m for m in messages if m.get("channel") == self.channel]

    def skip_sent(self) -> None:
        """Count what the sandbox already holds as shown (sent before the phone picked up)."""
        self._seen.update(m["sid"] for m in self._fetch())

    def new_messages(self) -> list[str]:
        """The texts (a template as [template SID {variables}]) not handed out yet, oldest first."""
        if self.off:
            return []
        texts = []
        for message in self._fetch():
            if message["sid"] in self._seen:
                continue
            self._seen.add(message["sid"])
            if "content_sid" in message:
                variables = json.dumps(message.get("content_variables") or {}, ensure_ascii=False)
                texts.append(f"[template {message['content_sid']} {variables}]")
            else:
                texts.append(message.get("body", ""))
        return texts


def _watch(watch: SandboxWatch, stop: threading.Event, show) -> None:
    while not stop.wait(POLL_INTERVAL) and not watch.off:
        for text in watch.new_messages():
            show(text)


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
    server = (args.server or os.environ.get("CANVASS_SERVER") or DEFAULT_SERVER).rstrip("/")
    url = server + WEBHOOK_PATH
    auth_token = os.environ.get("TWILIO_AUTH_TOKEN") or None
    interactive = stdin.isatty()
    if interactive:
        print(f"Texting {url} from {prefix}{number}. Type a message, Ctrl-D to hang up.", file=stdout)
    printing = threading.Lock()  # the sandbox's messages and the replies, one line at a time

    def show(text: str) -> None:
        with printing:  # at a prompt, the message takes the prompt's line and the prompt returns
            if interactive:
                print(f"\r< {text}\n> ", end="", file=stdout, flush=True)
            else:
                print(f"< {text}", file=stdout, flush=True)

    watch = SandboxWatch(server, channel, number, os.environ.get("CANVASS_ADMIN_TOKEN") or None)
    watch.skip_sent()
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(watch, stop, show), daemon=True)
    watcher.start()
    try:
        while True:
            if interactive:
                with printing:
                    print("> ", end="", file=stdout, flush=True)
            line = stdin.readline()
            if not line:
                return 0
            body = line.rstrip("\r\n")
            if not interactive:
                with printing:
                    print(f"> {body}", file=stdout)  # a script's transcript reads like a conversation
            form = {"MessageSid": "SM" + uuid.uuid4().hex,
                    "AccountSid": os.environ.get("TWILIO_ACCOUNT_SID", ""),
                    "From": prefix + number, "To": prefix + to, "Body": body, "NumMedia": "0"}
            try:
                replies = text_server(url, form, auth_token)
            except PhoneError as err:
                print(f"canvass phone: {err}", file=sys.stderr)
                return 1
            with printing:
                for reply in replies:
                    print(f"< {reply}", file=stdout, flush=True)
    finally:
        stop.set()
