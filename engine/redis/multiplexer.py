"""One Redis connection shared by every request of a worker, its commands pipelined.

A webhook's Redis work is one or two script calls. Through redis-py's pool each call checks
a connection out and back in, writes with a system call of its own and wakes its task for
its own reply: half of a webhook's CPU went there (bench/run). Here every command written
in one turn of the event loop leaves in one write, and each read hands out every reply it
holds: Redis answers a connection's commands in order, so the Nth reply belongs to the Nth
caller still waiting. hiredis packs the commands and parses the replies.

When Redis, with commands outstanding, answers nothing for `timeout` seconds, a watchdog
fails every waiting call with a timeout and drops the connection: a frozen or vanished Redis
costs each caller at most about one timeout, and the next call connects afresh. One watchdog
per connection bounds every call, so no call pays for a timer of its own. A call cancelled
meanwhile leaves its place in the queue (its reply is dropped when it comes). A call whose
connection breaks before its reply is retried once on a new one; the scripts sent through
here are safe to repeat (store.py: a repeated commit knows whether it landed). A command
that could not be put on any connection fails with NotSent: it never ran.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any

import hiredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_INCOMPLETE = object()  # what hiredis.Reader.gets() returns until a whole reply is in


class _Link(asyncio.Protocol):
    """One connection: the callers waiting for replies, in the order their commands left."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future] = deque()
        self.outgoing: list[bytes] = []
        self.progress_at = 0.0  # when Redis last answered, or the queue last became non-empty
        self.watchdog: asyncio.TimerHandle | None = None
        self.watch_at = 0.0  # when the watchdog is due
        self.lost: Exception | None = None
        self._reader = hiredis.Reader(encoding="utf-8", replyError=ResponseError,
                                      notEnoughData=_INCOMPLETE)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, command: bytes) -> asyncio.Future:
        if self.lost is not None:
            raise RedisConnectionError(f"Redis connection lost: {self.lost}")
        loop = asyncio.get_running_loop()
        if not self.outgoing:
            loop.call_soon(self._flush)
        self.outgoing.append(command)
        if not self.waiting:
            self.progress_at = loop.time()
            if self.watchdog is None:
                self._arm(loop)
        reply = loop.create_future()
        self.waiting.append(reply)
        return reply

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self.watch_at = loop.time() + self.timeout / 8
        self.watchdog = loop.call_at(self.watch_at, self._watch)

    def _watch(self) -> None:
        self.watchdog = None
        if not self.waiting or self.lost is not None:
            return
        loop = asyncio.get_running_loop()
        late = loop.time() - self.watch_at
        if late > self.timeout / 8:  # the event loop itself was blocked: not Redis's silence,
            self.progress_at += late  # and replies may be waiting unread in the socket
        if loop.time() - self.progress_at >= self.timeout:
            self.close(RedisTimeoutError(f"Redis did not answer within {self.timeout:g} s"))
        else:
            self._arm(loop)

    def _flush(self) -> None:
        if self.outgoing and self.lost is None:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()

    def data_received(self, data: bytes) -> None:
        reader, waiting = self._reader, self.waiting
        reader.feed(data)
        try:
            while True:
                try:
                    reply = reader.gets()
                except UnicodeDecodeError as err:  # hiredis has consumed the whole reply
                    reply = ResponseError(f"the reply is not UTF-8 text: {err}")
                if reply is _INCOMPLETE:
                    break
                caller = waiting.popleft()
                if caller.done():  # it was cancelled meanwhile
                    continue
                if isinstance(reply, ResponseError):
                    caller.set_exception(_error(str(reply)))
                else:
                    caller.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as err:  # not Redis, or a reply nobody asked for
            self.close(RedisConnectionError(f"Redis sent an unreadable reply: {err}"))
            return
        self.progress_at = asyncio.get_running_loop().time()

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"Redis closed the connection{f': {exc}' if exc else ''}"))

    def close(self, why: Exception) -> None:
        self._fail(why)
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, why: Exception) -> None:
        if self.lost is None:
            self.lost = why
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        while self.waiting:
            caller = self.waiting.popleft()
            if not caller.done():
                caller.set_exception(why)


class NotSent(RedisConnectionError):
    """Redis could not be reached, so the command was never put on a connection: it did not
    run (unlike a command whose connection broke after it left, which may have)."""


def _error(message: str) -> ResponseError:
    return NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)


class Multiplexer:
    """Pipelined commands over one connection, for a redis-py client's connection settings."""

    def __init__(self, connection_kwargs: dict[str, Any], connection_class: type,
                 timeout: float = 1.0):
        self._kwargs, self._class, self.timeout = connection_kwargs, connection_class, timeout
        self._link: _Link | None = None
        self._connecting: asyncio.Task | None = None
        self._closed = False

    @classmethod
    def like(cls, client, timeout: float = 1.0) -> Multiplexer:
        """A multiplexer reaching the Redis (address, credentials, database) `client` reaches."""
        pool = client.connection_pool
        return cls(pool.connection_kwargs, pool.connection_class, timeout)

    async def execute(self, *args: Any) -> Any:
        """One command's reply; RedisTimeoutError when Redis stalls for `timeout` seconds,
        ConnectionError when it cannot be reached, ResponseError (NoScriptError...) when it
        refuses the command."""
        command = hiredis.pack_command(args)
        try:
            return await self._once(command)
        except NotSent:
            return await self._once(command)
        except RedisConnectionError:  # a stale connection: Redis restarted meanwhile
            try:
                return await self._once(command)
            except NotSent as err:  # but the first try may have run
                raise RedisConnectionError(str(err)) from None

    async def _once(self, command: bytes) -> Any:
        """The reply; NotSent when the command could not be put on a connection."""
        if self._closed:
            raise NotSent("the Redis multiplexer is closed")
        link = self._link
        try:
            if link is None or link.lost is not None:
                link = await self._connected()
            reply = link.send(command)
        except NotSent:
            raise
        except RedisConnectionError as err:
            raise NotSent(str(err)) from None
        return await reply

    async def _connected(self) -> _Link:
        """The current link; every caller that finds none waits for the same new one."""
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
            self._connecting.add_done_callback(self._connect_done)
        return await asyncio.shield(self._connecting)

    def _connect_done(self, task: asyncio.Task) -> None:
        self._connecting = None
        if task.cancelled() or task.exception() is not None:
            return  # (the exception is retrieved: every waiting caller has it already)
        if self._closed:  # closed while it connected
            task.result().close(RedisConnectionError("the Redis multiplexer is closed"))
        else:
            self._link = task.result()

    async def _connect(self) -> _Link:
        kwargs = self._kwargs
        limit = kwargs.get("socket_connect_timeout") or self.timeout
        try:
            async with asyncio.timeout(limit):
                link = await self._open()
        except TimeoutError:  # a timeout, not a ConnectionError: execute() must not wait twice
            raise RedisTimeoutError(f"Redis did not accept a connection within {limit:g} s") from None
        except OSError as err:
            raise RedisConnectionError(f"cannot connect to Redis: {err.strerror or err}") from None
        hello = []
        if kwargs.get("password"):
            hello.append(("AUTH", *filter(None, (kwargs.get("username"), kwargs["password"]))))
        if kwargs.get("db"):
            hello.append(("SELECT", kwargs["db"]))
        try:
            for command in hello:
                await link.send(hiredis.pack_command(command))
        except BaseException:
            link.close(RedisConnectionError("Redis refused the connection's set-up"))
            raise
        return link

    def _new_link(self) -> _Link:
        return _Link(self.timeout)

    async def _open(self) -> _Link:
        kwargs, loop = self._kwargs, asyncio.get_running_loop()
        if issubclass(self._class, UnixDomainSocketConnection):
            _, link = await loop.create_unix_connection(self._new_link, kwargs["path"])
        else:
            tls = _tls_context(kwargs) if issubclass(self._class, SSLConnection) else None
            _, link = await loop.create_connection(self._new_link, kwargs.get("host", "localhost"),
                                                   kwargs.get("port", 6379), ssl=tls)
        return link

    async def aclose(self) -> None:
        """Fail every call in flight, and every later one, with a ConnectionError."""
        self._closed = True
        if self._link is not None:
            self._link.close(RedisConnectionError("the multiplexer was closed"))
            self._link = None


def _tls_context(kwargs: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=kwargs.get("ssl_ca_certs"))
    if kwargs.get("ssl_cert_reqs") in ("none", ssl.CERT_NONE):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if kwargs.get("ssl_certfile"):
        context.load_cert_chain(kwargs["ssl_certfile"], kwargs.get("ssl_keyfile"))
    return context
