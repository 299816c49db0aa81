"""`canvass distribute` and `canvass distributions`: distributions through a running server's
admin API (--server, default CANVASS_SERVER or http://127.0.0.1:8080; the bearer token in
CANVASS_ADMIN_TOKEN).

    canvass distribute --survey S --list L [--name N] [--channel sms|whatsapp] [--at ISO]
                       [--quiet-hours 09:00-20:00] [--mode 2way|link] [--message TEXT]
                       [--sender FROM] [--dry-run]
    canvass distributions list
    canvass distributions show ID [--watch]
    canvass distributions cancel ID
    canvass distributions recipients ID [--format csv|jsonl]

Creating a distribution renders each contact's invitation with the survey's flow, which the
server holds (its registry of loaded flows), so these commands ask the server rather than the
database. Each prints the server's JSON answer (recipients: the file) on stdout; errors go to
stderr. Exit codes: 0 done, 1 the server is unreachable or failed, 2 it refused the request.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_SERVER = "http://127.0.0.1:8080"
TIMEOUT = 600.0  # creating a distribution of a large list reads every contact
WATCH_EVERY = 1.0
BAR_WIDTH = 30
FINISHED = ("done", "cancelled")
SHOWN_STATES = ("sent", "delivered", "failed", "undelivered", "unknown", "skipped", "cancelled")


class Failed(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class Client:
    def __init__(self, server: str | None):
        self.server = (server or os.environ.get("CANVASS_SERVER") or DEFAULT_SERVER).rstrip("/")
        self.token = os.environ.get("CANVASS_ADMIN_TOKEN") or None

    def call(self, method: str, path: str, body: dict | None = None, **query):
        """The answer's body (JSON decoded unless `raw`); Failed with the server's message."""
        raw = query.pop("raw", False)
        url = self.server + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                content = response.read()
        except urllib.error.HTTPError as err:
            text = err.read().decode("utf-8", "replace")
            try:
                message = json.loads(text)["message"]
            except (ValueError, KeyError, TypeError):
                message = text.strip() or err.reason
            raise Failed(f"the server answered {err.code}: {message}", 2 if err.code < 500 else 1) from None
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            raise Failed(f"cannot reach {self.server}: {getattr(err, 'reason', err)} (is the server "
                         "running? `./dev serve` starts one; --server or CANVASS_SERVER say where)", 1) from None
        return content if raw else json.loads(content)


def _print_json(value) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def quiet_hours(text: str) -> dict:
    start, dash, end = text.partition("-")
    if not dash:
        raise Failed(f"--quiet-hours '{text}': write FROM-TO, e.g. 09:00-20:00", 2)
    return {"from": start.strip(), "to": end.strip()}


def run_distribute(args) -> int:
    try:
        body = {"survey": args.survey, "list": args.list, "channel": args.channel}
        if args.name:
            body["name"] = args.name
        if args.at:
            body["send_at"] = args.at
        if args.quiet_hours:
            body["quiet_hours"] = quiet_hours(args.quiet_hours)
        if args.mode != "2way":
            body["mode"] = args.mode
        for option in ("message", "sender"):  # the server says when they do not fit the mode
            if getattr(args, option) is not None:
                body[option] = getattr(args, option)
        query = {"dry_run": "true"} if args.dry_run else {}
        answer = Client(args.server).call("POST", "/admin/distributions", body, **query)
    except Failed as err:
        print(f"canvass distribute: {err}", file=sys.stderr)
        return err.code
    _print_json(answer)
    estimate = answer["estimate"]
    skipped = sum(estimate["skipped"].values())
    said = f"{estimate['recipients']} recipient(s), {skipped} skipped, {estimate['segments']} segment(s)"
    if estimate["credits"] is not None:
        said += f", {estimate['credits']} credit(s)"
    print(f"estimate only: {said}" if args.dry_run else f"{answer['id']} scheduled: {said}", file=sys.stderr)
    return 0


def progress_line(described: dict) -> str:
    """One line: a bar of the recipients no longer waiting, the counts, the status."""
    counts = described["counts"]
    total = sum(counts.values())
    settled = total - counts["pending"] - counts["queued"]
    share = settled / total if total else 1.0
    filled = round(share * BAR_WIDTH)
    figures = [f"{state} {counts[state]}" for state in SHOWN_STATES if counts[state]]
    waiting = described.get("waiting") or {}
    if waiting.get("recipients"):
        figures.append(f"{waiting['recipients']} waiting for quiet hours (from {waiting['until']})")
    return " ".join([f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}]", f"{share:4.0%}", f"{settled}/{total}",
                     *figures, "·", described["status"]])


def watch(client: Client, distribution_id: str, out=None, sleep=time.sleep) -> dict:
    """Show the progress until the distribution is done or cancelled: one line redrawn in
    place on a terminal, a line per change otherwise."""
    out = out or sys.stdout
    terminal, last = out.isatty(), None
    while True:
        described = client.call("GET", f"/admin/distributions/{distribution_id}")
        line = progress_line(described)
        if terminal:
            out.write(f"\r\x1b[2K{line}")
        elif line != last:
            out.write(line + "\n")
        out.flush()
        last = line
        if described["status"] in FINISHED:
            if terminal:
                out.write("\n")
            return described
        sleep(WATCH_EVERY)


def run_distributions(args) -> int:
    client = Client(args.server)
    try:
        if args.action == "list":
            _print_json(client.call("GET", "/admin/distributions")["distributions"])
        elif args.action == "show":
            if args.watch:
                watch(client, _quoted(args.id))
            else:
                _print_json(client.call("GET", f"/admin/distributions/{_quoted(args.id)}"))
        elif args.action == "cancel":
            _print_json(client.call("POST", f"/admin/distributions/{_quoted(args.id)}/cancel", {}))
        else:
            content = client.call("GET", f"/admin/distributions/{_quoted(args.id)}/recipients",
                                  format=args.format, raw=True)
            sys.stdout.write(content.decode("utf-8"))
            sys.stdout.flush()
    except Failed as err:
        print(f"canvass distributions {args.action}: {err}", file=sys.stderr)
        return err.code
    return 0


def _quoted(distribution_id: str) -> str:
    return urllib.parse.quote(distribution_id, safe="")
