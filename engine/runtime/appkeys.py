"""The aiohttp application's typed keys, and the JSON error answer every admin handler gives.
server.py fills the keys (its cleanup_ctx opens the resources); handlers in server.py and
in the runtime's route modules read them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from engine.records.archiver import Archiver
from engine.records.reading import Responses
from engine.redis.store import Store
from engine.runtime.distributor import Distributor
from engine.runtime.fleet import Member
from engine.runtime.metrics import Metrics
from engine.runtime.registry import Registry
from engine.runtime.service import Service
from engine.runtime.settings import Settings
from engine.runtime.timers import Sweeper
from engine.sms.credits import Rates

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Callable[[], float])
METRICS = web.AppKey("metrics", Metrics)
STORE = web.AppKey("store", Store)
REGISTRY = web.AppKey("registry", Registry)
SERVICE = web.AppKey("service", Service)
SWEEPER = web.AppKey("sweeper", Sweeper)
RELOAD_LOCK = web.AppKey("reload_lock", asyncio.Lock)
MEMBER = web.AppKey("member", Member)
SHARED_METRICS = web.AppKey("shared_metrics", str)  # a worker of `--workers N`: its server's name
RESPONSES = web.AppKey("responses", Responses)
ARCHIVER = web.AppKey("archiver", Archiver)
DISTRIBUTOR = web.AppKey("distributor", Distributor)
RATES = web.AppKey("rates", Rates | None)  # the credits table; None: credits are off
# credits of an invitation, (region, segments) -> credits or None; unset: estimates show no credits
PRICE = web.AppKey("price", Callable[[str, int], object])


def error(status: int, reason: str, message: str, **extra) -> web.Response:
    return web.json_response({"error": reason, "message": message, **extra}, status=status)
