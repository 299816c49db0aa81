"""The floor: the least a webhook server on aiohttp and Redis can do per message.

    python -m bench.floor --port PORT --redis-url URL

It parses the same form Canvass parses, does one Redis GET and one SET, and answers a
fixed TwiML. No signature check, no state machine, no exactly-once: what Canvass costs
above this is the price of everything it does.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator, Callable

import redis.asyncio as redis
from aiohttp import web

REDIS = web.AppKey("redis", redis.Redis)
REPLY = ('<?xml version="1.0" encoding="UTF-8"?><Response><Message>'
         "Thanks for taking the benchmark survey.</Message></Response>")


async def message(request: web.Request) -> web.Response:
    form = await request.post()
    key = f"floor:{{{form['From']}}}"
    client = request.app[REDIS]
    await client.get(key)
    await client.set(key, form["Body"])
    return web.Response(text=REPLY, content_type="application/xml")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_app(redis_url: str) -> web.Application:
    async def storage(app: web.Application) -> AsyncIterator[None]:
        # A connection per request in flight: redis-py refuses a command past max_connections.
        app[REDIS] = redis.Redis.from_url(redis_url, decode_responses=True, max_connections=10_000)
        yield
        await app[REDIS].aclose()

    app = web.Application()
    app.cleanup_ctx.append(storage)
    app.router.add_post("/twilio/messages", message)
    app.router.add_get("/healthz", healthz)
    return app


def serve(prog: str, create: Callable[[str], web.Application]) -> None:
    """Run a floor server made by `create(redis_url)` on 127.0.0.1 (--port, --redis-url)."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    web.run_app(create(args.redis_url), host="127.0.0.1", port=args.port, access_log=None, print=None)


def main() -> None:
    serve("bench.floor", create_app)


if __name__ == "__main__":
    main()
