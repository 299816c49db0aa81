"""`canvass survey status ID [active|paused|closed]`: show or set a survey's status through a
running server's admin API (GET or PUT /admin/surveys/{id}/status; --server and the token as
for `canvass distributions`). Prints the server's JSON answer; the exit codes are
engine.tools.distributions': 0 done, 1 the server is unreachable or failed, 2 it refused."""

from __future__ import annotations

import json
import sys
import urllib.parse

from engine.tools.distributions import Client, Failed


def run_survey(args) -> int:
    client = Client(args.server)
    path = f"/admin/surveys/{urllib.parse.quote(args.id, safe='')}/status"
    try:
        if args.status is None:
            answer = client.call("GET", path)
        else:
            answer = client.call("PUT", path, {"status": args.status})
    except Failed as err:
        print(f"canvass survey status: {err}", file=sys.stderr)
        return err.code
    print(json.dumps(answer, indent=2, ensure_ascii=False))
    return 0
