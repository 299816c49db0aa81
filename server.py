"""The aiohttp application: routes, middlewares, startup and cleanup. The work lives in engine/."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import hmac
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping

import watchfiles
from aiohttp import web
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from engine.conversation import Respondent
from engine.records import migrate
from engine.records.archiver import Archiver
from engine.records.database import connect as connect_records
from engine.records.database import database_url, redacted
from engine.records.migrate import SchemaNotCurrent
from engine.records.reading import Responses
from engine.records.summary import summarise
from engine.records.writes import PREVIEW_FIELD
from engine.redis.outbox import Outbox
from engine.redis.store import Store
from engine.responses import iso
from engine.runtime import exports
from engine.runtime.appkeys import (
    ARCHIVER,
    CLOCK,
    DISTRIBUTOR,
    MEMBER,
    METRICS,
    PRICE,
    RATES,
    REGISTRY,
    RELOAD_LOCK,
    RESPONSES,
    SERVICE,
    SETTINGS,
    SHARED_METRICS,
    STORE,
    SWEEPER,
    error,
)
from engine.runtime.contact_api import add_contact_routes
from engine.runtime.credits_api import add_credits_routes
from engine.runtime.distribution_api import add_distribution_routes
from engine.runtime.distributor import INTERVAL as DISTRIBUTE_EVERY
from engine.runtime.distributor import Distributor
from engine.runtime.fleet import Member, confirmations
from engine.runtime.link_api import add_link_routes
from engine.runtime.metrics import Metrics, redis_gauges, render_workers
from engine.runtime.outbox import Pacing, Senders
from engine.runtime.outbox_api import add_outbox_routes
from engine.runtime.registry import Registry, ReloadFailed
from engine.runtime.sandbox_api import add_sandbox_routes
from engine.runtime.service import Busy, Refused, Service
from engine.runtime.settings import REDIS_HINT, ConfigError, Settings, redact
from engine.runtime.status_api import add_status_routes
from engine.runtime.timers import Sweeper
from engine.runtime.twilio import (
    BadWebhook,
    SandboxSender,
    Sender,
    parse_inbound,
    parse_status,
    signature_valid,
    twiml,
)
from engine.runtime.untrusted import (
    UntrustedInput,
    contact_fields,
    escape_server_logs,
    loggable,
    parse_json,
    readable_charset,
)
from engine.runtime.usage import Usage
from engine.runtime.web import handlers as web_pages
from engine.sms.credits import estimate_credits
from engine.sms.phones import InvalidNumber, to_e164

log = logging.getLogger("canvass.server")

MAX_BODY = 64 * 1024
CHANNELS = ("sms", "whatsapp")
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (see tune_collector)



# ---------------------------------------------------------------- middlewares


@web.middleware
async def errors(request: web.Request, handler):
    """Redis down -> a fast 503; anything unexpected -> a plain 500, logged, no details."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except (RedisError, Busy) as err:
        log.warning("%s %s: 503, %s", loggable(request.method), loggable(request.path), loggable(err))
        return web.Response(status=503, text="Service unavailable: storage is not reachable, try again.\n",
                            headers={"Retry-After": "1"})
    except Exception:
        log.exception("%s %s failed", loggable(request.method), loggable(request.path))
        return web.Response(status=500, text="Internal server error.\n")


@web.middleware
async def charsets(request: web.Request, handler):
    """A body in a charset that cannot be decoded is refused before anything reads it."""
    if request.body_exists and not readable_charset(request.charset):
        return web.Response(status=415, text=f"Unsupported charset {loggable(request.charset)!r}: "
                                             "send UTF-8 (or no charset).\n")
    return await handler(request)


@web.middleware
async def admin_auth(request: web.Request, handler):
    if not request.path.startswith("/admin/"):
        return await handler(request)
    settings = request.app[SETTINGS]
    if settings.admin_open:
        return await handler(request)
    if settings.admin_token is not None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        # Bytes on both sides: a header that is not ASCII is simply a wrong token, not an error.
        # Only ASCII spaces and tabs around the token are forgiven (str.strip would also drop
        # U+2028 and other Unicode spaces: such a token is wrong, as the README says).
        if scheme.lower() == "bearer" and hmac.compare_digest(
                token.strip(" \t").encode("utf-8", "surrogateescape"), settings.admin_token.encode()):
            return await handler(request)
    return web.json_response({"error": "unauthorized", "message": "a valid admin bearer token is required"},
                             status=401, headers={"WWW-Authenticate": 'Bearer realm="canvass"'})


# ---------------------------------------------------------------- Twilio webhooks


async def signed_form(request: web.Request) -> Mapping[str, str]:
    """The webhook's form fields, after its X-Twilio-Signature is checked (403 when wrong)."""
    if request.content_type not in FORM_TYPES:
        raise web.HTTPUnsupportedMediaType(text="Twilio webhooks are form-encoded.\n")
    try:
        form = await request.post()
    except (ValueError, UnicodeDecodeError, LookupError):  # broken multipart, not text, a part's bad charset
        raise web.HTTPBadRequest(text="The body is not a readable form.\n") from None
    if request.content_type == "multipart/form-data" and any(not isinstance(value, str) for value in form.values()):
        raise web.HTTPBadRequest(text="The webhook may only carry text fields.\n")  # (file uploads)
    settings = request.app[SETTINGS]
    if settings.auth_token:
        url = settings.public_url(request.path_qs) or str(request.url)
        if not signature_valid(settings.auth_token, url, form, request.headers):
            raise web.HTTPForbidden(text="Invalid or missing X-Twilio-Signature.\n")
    return form


def status_callback_url(request: web.Request) -> str | None:
    return request.app[SETTINGS].public_url("/twilio/status")


async def signed_webhook(request: web.Request, parse):
    """A signed webhook's form read by `parse` (parse_inbound, parse_status); 400 when it lacks a field."""
    form = await signed_form(request)
    try:
        return parse(form)
    except BadWebhook as err:
        raise web.HTTPBadRequest(text=f"{err}\n") from None


async def twilio_messages(request: web.Request) -> web.Response:
    replies = await request.app[SERVICE].receive(await signed_webhook(request, parse_inbound))
    return web.Response(text=twiml(replies, status_callback_url(request)), content_type="application/xml")


async def twilio_status(request: web.Request) -> web.Response:
    await request.app[SERVICE].record_status(await signed_webhook(request, parse_status))
    return web.Response(status=204)


# ---------------------------------------------------------------- admin API


async def admin_start(request: web.Request, preview: bool = False) -> web.Response:
    """Start the survey for one number; a preview's session carries the field preview = "1",
    so its response stays out of exports and summaries unless they ask for previews."""
    try:
        body = parse_json(await request.read(), request.charset)
        if not isinstance(body, dict):
            return error(400, "bad_json", "the body must be a JSON object")
        channel = body.get("channel", "sms")
        if channel not in CHANNELS:
            return error(400, "bad_channel", f"channel must be one of {', '.join(CHANNELS)}")
        fields = contact_fields(body.get("fields", {}))
        if preview:
            fields[PREVIEW_FIELD] = "1"
    except UntrustedInput as err:
        return error(err.status, err.reason, err.message)
    if not isinstance(body.get("to"), str):
        return error(400, "bad_number", "'to' must be the respondent's phone number in E.164 form")
    try:
        phone = to_e164(body["to"])
    except InvalidNumber as err:
        return error(400, "bad_number", str(err))
    try:
        started = await request.app[SERVICE].start(
            request.match_info["survey"], channel, phone, fields)
    except Refused as err:
        return error(err.status, err.reason, err.message)
    return web.json_response(started, status=201)


async def admin_preview(request: web.Request) -> web.Response:
    return await admin_start(request, preview=True)


async def admin_flows(request: web.Request) -> web.Response:
    described = request.app[REGISTRY].describe()
    described["loaded_at"] = iso(described["loaded_at"])
    try:  # every worker and server sharing the Redis, and the generation each runs
        described["workers"] = [{"worker": worker, "generation": entry["generation"],
                                 **({"refused": entry["refused"], "error": entry["error"]} if entry["refused"] else {})}
                                for worker, entry in sorted((await request.app[STORE].workers()).items())]
    except RedisError:
        described["workers"] = None  # what this worker runs is still worth showing
    return web.json_response(described)


async def reload_flows(app: web.Application, why: str, confirm: bool = False) -> dict:
    """Reload every flow and announce it to every worker; on any error nothing changes and the
    report is logged and returned. With `confirm`, wait for the other workers to take it."""
    registry = app[REGISTRY]
    async with app[RELOAD_LOCK]:
        try:
            announced = await registry.announce()
        except ReloadFailed as err:
            app[METRICS].reloads.inc("error")
            log.error("reload (%s) refused, the live flows stay as they were:\n%s", why, err.report)
            return {"ok": False, "report": err.report,
                    "diagnostics": [d.to_json() for d in err.diagnostics]}
    app[METRICS].reloads.inc("ok")
    await app[MEMBER].beat()  # this worker runs it: say so before anyone reads the list
    live = announced.live
    log.info("reload (%s): generation %d: %s", why, live.generation,
             ", ".join(f"{f.id}@{f.version}" for f in live.flows.values()))
    result = {"ok": True, "generation": live.generation,
              "flows": [{"id": f.id, "version": f.version} for f in live.flows.values()]}
    if confirm:
        answers = await confirmations(app[STORE], live.generation, announced.workers, registry.worker)
        result["ok"], result["workers"] = answers.complete, answers.to_json()
    return result


async def reload_in_background(app: web.Application, why: str) -> None:
    """A reload nobody waits for (SIGHUP, --watch): every failure is logged, none escapes."""
    try:
        await reload_flows(app, why)
    except Exception:
        app[METRICS].reloads.inc("error")
        log.exception("reload (%s) failed, the live flows stay as they were", why)


async def admin_reload(request: web.Request) -> web.Response:
    """200 once every worker runs the new flows; 422 (nothing changed) when they have errors;
    503 when some worker did not confirm within CONFIRM_TIMEOUT or could not compile them:
    the new flows are live for the others and the answer names who lags."""
    result = await reload_flows(request.app, "admin API", confirm=True)
    if "report" in result:
        return error(422, "flow_errors", "the flows have errors; nothing was reloaded",
                      report=result["report"], diagnostics=result["diagnostics"])
    if not result["ok"]:
        workers = result["workers"]
        lagging = workers["unconfirmed"] + [r["worker"] for r in workers["refused"]]
        return error(503, "reload_incomplete",
                      f"generation {result['generation']} is live, but {len(lagging)} worker(s) do not run it yet: "
                      f"{', '.join(lagging)}", generation=result["generation"], flows=result["flows"],
                      workers=workers)
    return web.json_response(result)


async def admin_responses(request: web.Request) -> web.StreamResponse:
    survey = request.match_info["survey"]
    try:
        options = exports.options_from_query(request.query)
    except exports.ExportError as err:
        return error(400, "bad_export", str(err))
    responses, registry = request.app[RESPONSES], request.app[REGISTRY]
    pieces = exports.export(responses, survey, exports.StoredFlows(request.app[STORE], registry.get), options)
    try:  # whatever fails before the first byte is sent is a plain answer
        if registry.get(survey) is None and not await responses.has_responses(survey):
            return error(404, "unknown_survey", f"there is no survey '{survey}' and no responses to it")
        first = await anext(pieces, "")
    except (SQLAlchemyError, OSError) as err:
        log.warning("export of %s refused: the records database: %s", survey, type(err).__name__)
        return error(503, "records_unavailable", "the records database is not reachable, try again")
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8" if options.form == "csv" else "application/x-ndjson; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{survey}.{options.form}"'})
    await response.prepare(request)
    try:
        await response.write(first.encode())
        async for piece in pieces:
            await response.write(piece.encode())
    except (RedisError, SQLAlchemyError, OSError) as err:
        # The status went out with the headers: cut the body short, so no client takes
        # what it got for the whole export (a chunked body without its last chunk).
        log.warning("export of %s responses cut short: %s", survey, type(err).__name__)
        request.transport.abort()
        return response
    await response.write_eof()
    return response


async def admin_sessions(request: web.Request) -> web.Response:
    try:
        phone = to_e164(request.match_info["number"])
    except InvalidNumber as err:
        return error(400, "bad_number", str(err))
    store = request.app[STORE]
    records = await store.records(phone, CHANNELS)
    channels = {}
    for channel, record in records.items():
        respondent = dataclasses.asdict(Respondent.loads(record, channel, phone)) if record else None
        channels[channel] = {"respondent": exports.times_as_iso(respondent),
                             "deliveries": exports.times_as_iso(await store.deliveries(channel, phone))}
    return web.json_response({"phone": phone, "channels": channels})


async def admin_summary(request: web.Request) -> web.Response:
    survey = request.match_info["id"]
    previews = request.query.get("preview", "false").lower()
    if previews not in exports.FLAGS:
        return error(400, "bad_preview", "preview must be true or false")
    responses, registry = request.app[RESPONSES], request.app[REGISTRY]
    flows = exports.StoredFlows(request.app[STORE], registry.get)
    try:
        if registry.get(survey) is None and not await responses.has_responses(survey):
            return error(404, "unknown_survey", f"there is no survey '{survey}' and no responses to it")
        return web.json_response(await summarise(responses, survey, flows, exports.FLAGS[previews]))
    except (SQLAlchemyError, OSError) as err:
        log.warning("summary of %s refused: the records database: %s", survey, type(err).__name__)
        return error(503, "records_unavailable", "the records database is not reachable, try again")
# ---------------------------------------------------------------- health


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "pid": os.getpid()})  # which worker answered


def redis_refuses_writes(health: dict) -> str | None:
    """Why Redis would refuse a commit now, or None."""
    if health["aof_last_write"] != "ok":
        return "the last AOF write failed (disk full or unwritable?): Redis refuses writes"
    if health["memory_full"]:
        return "Redis (on a Cluster, one of its masters) is at its maxmemory limit: writes are refused (raise maxmemory)"
    return None


async def readyz(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    try:
        health = await request.app[STORE].health()
        if not registry.published:
            await registry.publish()
    except RedisError as err:
        return web.json_response({"status": "unavailable", "redis": str(err)}, status=503)
    figures = {"redis_memory": {key: health[key] for key in ("used_bytes", "max_bytes", "policy")},
               "redis_persistence": {key: health[key] for key in
                                     ("aof_enabled", "aof_last_write", "aof_last_rewrite", "rdb_last_snapshot")}}
    refused = redis_refuses_writes(health)
    if refused:
        return web.json_response({"status": "unavailable", "redis": refused, **figures}, status=503)
    if not registry.live.flows:
        return web.json_response({"status": "unavailable", "flows": 0, **figures}, status=503)
    return web.json_response({"status": "ready", "redis": "ok", "flows": len(registry.live.flows), **figures})


async def metrics(request: web.Request) -> web.Response:
    """This process's metrics (a worker of `--workers N` shows every worker's, by `worker` pid),
    then Redis's own gauges."""
    app, text = request.app, None
    shared = app.get(SHARED_METRICS)
    if shared is not None:
        own = app[METRICS].samples()
        try:
            await app[STORE].save_metrics(shared, str(os.getpid()), own, time.time())
            text = render_workers(await app[STORE].all_metrics(shared, time.time()))
        except RedisError as err:
            log.warning("metrics of the other workers unavailable: %s", err)
            text = render_workers({str(os.getpid()): own})
    try:
        health = await app[STORE].health()
    except RedisError:
        health = None  # the process's own figures are still worth a scrape
    return web.Response(text=(text or app[METRICS].render()) + redis_gauges(health), content_type="text/plain",
                        headers={"X-Content-Type-Options": "nosniff"})


# ---------------------------------------------------------------- resources (cleanup_ctx)


async def storage(app: web.Application) -> AsyncIterator[None]:
    """Redis, the flows (stored in Redis before they go live) and the conversation service."""
    settings = app[SETTINGS]
    try:
        store = await Store.open(settings.redis_url, settings.replication)  # one Redis or a Redis Cluster
    except ValueError as err:  # a URL a Redis Cluster cannot take
        raise ConfigError(f"REDIS_URL: {err}") from None
    registry = Registry(settings.flows_dir, store, app[CLOCK])
    try:
        try:
            loaded = await registry.reload()
        except RedisError as err:
            loaded = registry.load_unpublished()
            log.warning("Redis at %s is not reachable (%s); serving 503 until it is. %s",
                        loggable(redact(settings.redis_url)), loggable(err), REDIS_HINT)
        log.info("flows: %s", ", ".join(f"{f.id}@{f.version}" for f in loaded.flows.values()))
        sender = None
        if settings.can_send:
            sender = Sender(settings.account_sid, settings.auth_token, settings.api_base_url,
                            settings.public_url("/twilio/status"), settings.send_timeout)
        elif settings.sandbox:
            sender = SandboxSender(store, app[CLOCK])
        app[STORE], app[REGISTRY] = store, registry
        app[SERVICE] = service = Service(store, registry, settings, app[METRICS], app[CLOCK], sender)
        sending = None
        if sender is not None:
            service.senders = Senders(Outbox(store), sender, Pacing(settings.pacing), app[CLOCK],
                                      service.message_ended, service.message_sent, settings.send_timeout)
            service.senders.on_retry = lambda message: app[METRICS].send_retries.inc(message.channel)
            sending = asyncio.create_task(service.senders.run())
        try:
            yield
        finally:
            await service.aclose()  # commits being settled may still send
            if sending is not None:
                await service.senders.stop(sending)
            if sender is not None:
                await sender.close()
    finally:
        await store.aclose()


def records(interval: float):
    """The records database: its schema checked (SchemaNotCurrent stops the start), the
    archiver moving records into it (a round every `interval` seconds when idle), starts
    checked against its opt-outs, exports reading it, every message counted into its credit
    usage (engine.runtime.usage). A database unreachable at start is waited for by the
    archiver, which checks the schema before its first write, and by the usage, which keeps
    its counts meanwhile; webhooks do not need it. With sending configured, the distributor
    invites the recipients of due distributions (engine.runtime.distributor)."""
    async def records_database(app: web.Application) -> AsyncIterator[None]:
        url = database_url(app[SETTINGS].database_url)
        engine = connect_records(url)
        try:
            try:
                await migrate.check(engine, redacted(url))
            except (SQLAlchemyError, OSError) as err:
                log.warning("the records database %s is unreachable (%s); archiving waits for it",
                            redacted(url), type(err).__name__)
            archiver = Archiver(app[STORE], engine, lambda: app[REGISTRY].live.flows.keys(),
                                interval=interval)
            app[ARCHIVER], app[RESPONSES] = archiver, Responses(engine, app[STORE])
            app[SERVICE].records = archiver.book
            task = asyncio.create_task(archiver.run())
            app[SERVICE].usage = usage = Usage(engine, app[RATES], app[CLOCK])
            counting = asyncio.create_task(usage.run())
            app[DISTRIBUTOR] = distributor = Distributor(
                engine, app[SERVICE], app[CLOCK], app[SETTINGS].contact_frequency, min(interval, DISTRIBUTE_EVERY))
            distributing = asyncio.create_task(distributor.run()) if app[SERVICE].senders else None
            yield
            if distributing is not None:
                await distributor.stop(distributing)
            app[SERVICE].usage = None
            await usage.stop(counting)
            await archiver.stop(task)
        finally:
            await engine.dispose()

    return records_database


def timers(interval: float):
    async def sweeper(app: web.Application) -> AsyncIterator[None]:
        app[SWEEPER] = Sweeper(app[SERVICE], app[REGISTRY], interval, app[CLOCK])
        task = asyncio.create_task(app[SWEEPER].run())
        yield
        await app[SWEEPER].stop(task)

    return sweeper


async def watcher(app: web.Application) -> AsyncIterator[None]:
    stop = asyncio.Event()

    async def watch() -> None:
        async for _ in watchfiles.awatch(app[SETTINGS].flows_dir, stop_event=stop):
            await reload_in_background(app, "files changed")

    task = asyncio.create_task(watch())
    yield
    stop.set()
    await asyncio.gather(task, return_exceptions=True)


async def hangup(app: web.Application) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task] = set()

    def on_sighup() -> None:
        task = asyncio.create_task(reload_in_background(app, "SIGHUP"))
        pending.add(task)
        task.add_done_callback(pending.discard)

    loop.add_signal_handler(signal.SIGHUP, on_sighup)
    yield
    loop.remove_signal_handler(signal.SIGHUP)


async def fleet(app: web.Application) -> AsyncIterator[None]:
    """This worker among all sharing the Redis: takes every announced reload, beats its heart."""
    shared = app.get(SHARED_METRICS)
    on_beat = None
    if shared is not None:
        async def on_beat() -> None:
            await app[STORE].save_metrics(shared, str(os.getpid()), app[METRICS].samples(), time.time())

    app[MEMBER] = member = Member(app[REGISTRY], app[STORE], app[RELOAD_LOCK], on_beat)
    member.start()
    yield
    await member.stop()
    if shared is not None:
        with contextlib.suppress(RedisError):
            await app[STORE].drop_metrics(shared, str(os.getpid()))


# ---------------------------------------------------------------- the app


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time,
               timer_interval: float = 1.0, handle_sighup: bool = False) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY, middlewares=[errors, charsets, admin_auth])
    app[SETTINGS], app[CLOCK], app[METRICS] = settings, clock, Metrics()
    app[RATES] = rates = settings.rates()
    if rates is not None:  # estimates show credits: an invitation's segments, at least one
        app[PRICE] = lambda region, segments: estimate_credits(rates, region, max(1, segments))
    escape_server_logs()
    app[RELOAD_LOCK] = asyncio.Lock()
    app.cleanup_ctx.append(storage)
    app.cleanup_ctx.append(records(timer_interval))
    app.cleanup_ctx.append(timers(timer_interval))
    app.cleanup_ctx.append(fleet)
    if settings.watch:
        app.cleanup_ctx.append(watcher)
    if handle_sighup:
        app.cleanup_ctx.append(hangup)
    app.router.add_post("/twilio/messages", twilio_messages)
    app.router.add_post("/twilio/status", twilio_status)
    app.router.add_post("/admin/surveys/{survey}/start", admin_start)
    app.router.add_post("/admin/surveys/{survey}/preview", admin_preview)
    app.router.add_get("/admin/flows", admin_flows)
    app.router.add_post("/admin/reload", admin_reload)
    app.router.add_get("/admin/responses/{survey}", admin_responses)
    app.router.add_get("/admin/sessions/{number}", admin_sessions)
    app.router.add_get("/admin/surveys/{id}/summary", admin_summary)
    add_contact_routes(app)
    add_credits_routes(app)
    add_distribution_routes(app)
    add_sandbox_routes(app)
    add_outbox_routes(app)
    add_link_routes(app)
    add_status_routes(app)
    web_pages.setup(app)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def tune_collector(app: web.Application) -> None:
    """Set aside what startup built (flows, grammar, libraries: it lives as long as the process)
    so that the collector's full passes walk only what requests create, and collect the young
    generation every GC_YOUNG_THRESHOLD allocations, not 700: each young pass walks every
    request in flight, and with 700 they cost 7% of a webhook's CPU (bench/run).
    Requests make almost no reference cycles, so garbage does not pile up meanwhile."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def run_server(args) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("transitions").setLevel(logging.WARNING)  # it logs every state change at INFO
    logging.getLogger("twilio").setLevel(logging.WARNING)  # its client logs every request and its headers at INFO
    try:
        settings = Settings.from_env(args)
        warnings = settings.validate()
    except ConfigError as err:
        print(f"canvass serve: {err}", file=sys.stderr)
        return 2
    for warning in warnings if not args.reuse_port else ():  # a worker: its supervisor said them
        log.warning(warning)
    if args.workers > 1:
        from engine.runtime.workers import run_workers

        return run_workers(args)
    app = create_app(settings, handle_sighup=True)
    app.on_startup.append(tune_collector)
    if args.reuse_port:  # one of `--workers N`
        from engine.runtime.workers import exit_with_supervisor, server_name

        app.cleanup_ctx.append(exit_with_supervisor)
        app[SHARED_METRICS] = server_name(os.getppid())
    try:
        web.run_app(app, host=settings.host, port=settings.port, shutdown_timeout=30,
                    reuse_port=args.reuse_port or None,
                    access_log=logging.getLogger("aiohttp.access") if args.access_log else None,
                    print=lambda text: log.info(text.strip()))
    except ReloadFailed as err:
        print(f"canvass serve: the flows have errors, not starting:\n{err.report}", file=sys.stderr)
        return 1
    except SchemaNotCurrent as err:
        print(f"canvass serve: {err}", file=sys.stderr)
        return 1
    except ConfigError as err:
        print(f"canvass serve: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"canvass serve: cannot listen on {settings.host}:{settings.port}: {err.strerror or err}",
              file=sys.stderr)
        return 1
    return 0
