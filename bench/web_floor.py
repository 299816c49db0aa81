"""The web survey's floor: the least a web survey on aiohttp and Redis can do per request.

    python -m bench.web_floor --port PORT --redis-url URL

It answers the same requests as Canvass's individual links, with the same exchange: GET
/l/{token} renders a fixed question page (Canvass's own template, through aiohttp-jinja2),
POST /l/{token} parses the form and answers 303 to the link. Each request does one Redis
GET and one SET. No link lookup, no CSRF check, no state machine, no exactly-once: what
Canvass costs above this is the price of everything it does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import aiohttp_jinja2
import jinja2
import redis.asyncio as redis
from aiohttp import web

from bench.floor import serve
from engine import texts
from engine.runtime.web.handlers import TEMPLATES

REDIS = web.AppKey("redis", redis.Redis)
PAGE = SimpleNamespace(title="Benchmark survey", language="en", question="recommend", type="nps", invalid=None,
                       prompt="Hi Ana! How likely are you to recommend Northwind to a friend? Reply 0-10. "
                              "Text STOP to opt out.")
CONTEXT = {"page": PAGE, "language": "en", "title": PAGE.title, "page_id": "floorfloorfloor0", "csrf": "0" * 64,
           "nps": range(11), "texts": texts.builtin("en")}


async def _touch(request: web.Request, value: str) -> None:
    key = f"floor:{{{request.match_info['token']}}}"
    client = request.app[REDIS]
    await client.get(key)
    await client.set(key, value)


async def page(request: web.Request) -> web.Response:
    await _touch(request, "shown")
    return aiohttp_jinja2.render_template("question.html", request, CONTEXT)


async def post(request: web.Request) -> web.Response:
    form = await request.post()
    await _touch(request, form.get("answer", ""))
    raise web.HTTPSeeOther(f"/l/{request.match_info['token']}")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_app(redis_url: str) -> web.Application:
    async def storage(app: web.Application) -> AsyncIterator[None]:
        app[REDIS] = redis.Redis.from_url(redis_url, decode_responses=True, max_connections=10_000)
        yield
        await app[REDIS].aclose()

    app = web.Application()
    aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                         trim_blocks=True, lstrip_blocks=True)
    app.cleanup_ctx.append(storage)
    app.router.add_get("/l/{token}", page)
    app.router.add_post("/l/{token}", post)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    serve("bench.web_floor", create_app)


if __name__ == "__main__":
    main()
