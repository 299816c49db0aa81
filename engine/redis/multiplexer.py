"""One Redis connection shared by every request of a worker, its commands pipelined.

A webhook's Redis work is one or two script calls. Through redis-py's pool each call checks
a connection out and back in, writes with a system call of its own and wakes its task for
its own reply: half of a webhook's CPU went there (bench/run). Here every command written
in one turn of the event loop leaves in one write (a call that asks to go at once, send_now,
goes with those before it), and each read hands out every reply it holds: Redis answers a
connection's commands in order, so the Nth reply belongs to the Nth caller still waiting.
hiredis packs the commands and parses the replies.

When Redis, with commands outstanding, answers nothing for `timeout` seconds, a watchdog
fails every waiting call with a timeout and drops the connection: a frozen or vanished Redis
costs each caller at most about one timeout, and the next call connects afresh. One watchdog
per connection bounds every call, so no call pays for a timer of its own. A call cancelled
meanwhile leaves its place in the queue (its reply is dropped when it comes). A call whose
connection breaks before its reply is retried once on a new one; the scripts sent through
here are safe to repeat (store.py: a repeated commit knows whether it landed). A command
that could not be put on any connection fails with NotSent: it never ran.

On a Redis Cluster (engine.redis.cluster tells, when the worker connects) ClusterMultiplexer
keeps one such connection per master and sends each command to the master of its keys' slot;
one Redis's Multiplexer is chosen then, so it pays nothing for routing.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Awaitable
from typing import Any

import hiredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.cluster import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_INCOMPLETE = object()  # what hiredis.Reader.gets() returns until a whole reply is in
# A wait for Redis does not count the time its worker's event loop was blocked (a check of it
# came late), up to FORGIVEN timeouts of it: a longer pause, or a loop starved for longer (each
# of its turns a little late), counts, so that a silent Redis still fails a call within about
# 1 + FORGIVEN timeouts of wall time.
FORGIVEN = 2


def _forgiven(late: float, timeout: float, so_far: float) -> float:
    """How much of a check's lateness the wait does not count."""
    return min(late, FORGIVEN * timeout - so_far) if late > timeout / 8 else 0.0


class _Bound:
    """`bounded`'s clock: a check every eighth of the timeout, as the watchdog's."""

    __slots__ = ("loop", "task", "timeout", "started", "forgiven", "due", "handle", "expired")

    def __init__(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task, timeout: float):
        self.loop, self.task, self.timeout = loop, task, timeout
        self.started = loop.time()
        self.forgiven = 0.0  # the time the loop was blocked since, not counted
        self.expired = False
        self._arm()

    def _arm(self) -> None:
        self.due = self.loop.time() + self.timeout / 8
        self.handle = self.loop.call_at(self.due, self._check)

    def _check(self) -> None:
        now = self.loop.time()
        # the event loop was blocked: the reply may be unread in the socket
        self.forgiven += _forgiven(now - self.due, self.timeout, self.forgiven)
        if now - self.started - self.forgiven >= self.timeout:
            self.expired = True
            self.task.cancel()
        else:
            self._arm()


async def bounded(command: Awaitable, timeout: float) -> Any:
    """Await a call of redis-py's client for at most `timeout` seconds; RedisTimeoutError after.

    Timed as the watchdog times a connection: the time the event loop itself was blocked (a
    long collection, a big flow compiling, a starved CPU; up to FORGIVEN timeouts) does not
    count against Redis, whose reply may be waiting unread meanwhile. asyncio.timeout would
    count it, and fail a call Redis answered in time. One timer per call, as asyncio.timeout's.
    The call's whole wait is bounded so: connecting, and waiting for a pooled connection, too
    (engine.redis.store.connect gives redis-py no timers of its own)."""
    task = asyncio.current_task()
    cancelling = task.cancelling()
    bound = _Bound(asyncio.get_running_loop(), task, timeout)
    try:
        return await command
    except asyncio.CancelledError:
        if bound.expired:
            bound.expired = False
            if task.uncancel() <= cancelling:  # (only this bound's cancellation)
                raise RedisTimeoutError(f"Redis did not answer within {timeout:g} s") from None
        raise
    finally:
        bound.handle.cancel()
        if bound.expired:  # expired, but the command ended otherwise: its cancellation taken back
            task.uncancel()


class _Link(asyncio.Protocol):
    """One connection: the callers waiting for replies, in the order their commands left."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future] = deque()
        self.outgoing: list[bytes] = []
        self.progress_at = 0.0  # when Redis last answered, or the queue last became non-empty
        self.forgiven = 0.0  # how much the watchdog did not count since (FORGIVEN)
        self.watchdog: asyncio.TimerHandle | None = None
        self.watch_at = 0.0  # when the watchdog is due
        self.lost: Exception | None = None
        self.waits: dict[bytes, asyncio.Future] = {}  # WAIT commands for the next write: their replies
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
            self.progress_at, self.forgiven = loop.time(), 0.0
            if self.watchdog is None:
                self._arm(loop)
        reply = loop.create_future()
        self.waiting.append(reply)
        return reply

    def wait(self, command: bytes) -> asyncio.Future:
        """The reply of a WAIT sent at the end of the next write (after the command just sent),
        shared by every caller of this turn: one WAIT covers every command before it."""
        reply = self.waits.get(command)
        if reply is None:
            reply = self.waits[command] = asyncio.get_running_loop().create_future()
            reply.add_done_callback(_ignore)
        return reply

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        self.watch_at = loop.time() + self.timeout / 8
        self.watchdog = loop.call_at(self.watch_at, self._watch)

    def _watch(self) -> None:
        self.watchdog = None
        if not self.waiting or self.lost is not None:
            return
        loop = asyncio.get_running_loop()
        # the event loop itself was blocked: not Redis's silence, and replies may be waiting
        # unread in the socket
        self.forgiven += _forgiven(loop.time() - self.watch_at, self.timeout, self.forgiven)
        if loop.time() - self.progress_at - self.forgiven >= self.timeout:
            self.close(RedisTimeoutError(f"Redis did not answer within {self.timeout:g} s"))
        else:
            self._arm(loop)

    def _flush(self) -> None:
        if self.lost is None:
            for command, reply in self.waits.items():  # in the order of `waiting`: last
                self.outgoing.append(command)
                self.waiting.append(reply)
            if self.outgoing:
                self.transport.write(b"".join(self.outgoing))
        self.waits.clear()
        self.outgoing.clear()

    def write_now(self) -> None:
        """Write the commands sent so far this turn (the WAITs wait for the turn's end, so
        that each covers every command of the turn)."""
        if self.lost is None and self.outgoing:
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
        self.progress_at, self.forgiven = asyncio.get_running_loop().time(), 0.0

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
        for reply in self.waits.values():
            if not reply.done():
                reply.set_exception(why)
        self.waits.clear()


class NotSent(RedisConnectionError):
    """Redis could not be reached, so the command was never put on a connection: it did not
    run (unlike a command whose connection broke after it left, which may have)."""


def _error(message: str) -> ResponseError:
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    if message.startswith(("MOVED ", "ASK ")):
        return Redirected(message)
    return ResponseError(message)


class Redirected(ResponseError):
    """MOVED or ASK: a Redis Cluster node says another one serves the slot of the command's key.
    ClusterMultiplexer follows it; reaching a caller of Multiplexer (one Redis), it means the
    Redis became (or could not be reached to be seen as) a cluster node after the worker started."""

    def __init__(self, message: str):
        kind, slot, address = message.split()[:3]
        host, _, port = address.rpartition(":")
        self.kind, self.slot, self.host, self.port = kind, int(slot), host, int(port)
        super().__init__(f"{message} (a Redis Cluster redirection: if REDIS_URL names a cluster "
                         "node that could not be reached when the worker started, restart it)")


_ASKING = hiredis.pack_command(("ASKING",))


def _ignore(reply: asyncio.Future) -> None:
    if not reply.cancelled():
        reply.exception()  # retrieved: the command's own reply says what went wrong


class Multiplexer:
    """Pipelined commands over one connection, for a redis-py client's connection settings."""

    def __init__(self, connection_kwargs: dict[str, Any], connection_class: type,
                 timeout: float = 1.0):
        self._kwargs, self._class, self.timeout = connection_kwargs, connection_class, timeout
        self._link: _Link | None = None
        self._connecting: asyncio.Task | None = None
        self._closed = False

    @classmethod
    def like(cls, client, timeout: float = 1.0) -> Multiplexer | ClusterMultiplexer:
        """A multiplexer reaching the Redis (address, credentials, database) `client` reaches:
        for a redis-py RedisCluster client, a ClusterMultiplexer seeded with its startup nodes."""
        if isinstance(client, RedisCluster):
            kwargs = dict(client.connection_kwargs)
            connection_class = kwargs.pop("connection_class", Connection)
            seeds = [(node.host, int(node.port)) for node in client.nodes_manager.startup_nodes.values()]
            return ClusterMultiplexer(kwargs, connection_class, seeds, timeout)
        pool = client.connection_pool
        return cls(pool.connection_kwargs, pool.connection_class, timeout)

    async def execute(self, *args: Any, key: str | None = None, wait: bytes | None = None,
                      repeat: bool = True) -> Any:
        """One command's reply; RedisTimeoutError when Redis stalls for `timeout` seconds,
        ConnectionError when it cannot be reached, ResponseError (NoScriptError...) when it
        refuses the command. `key` names the slot of a command without keys (on a Redis
        Cluster; one Redis has one node). `wait`: a packed WAIT sent right after the command on
        its connection; then the reply is (the command's reply, the replicas WAIT counted).
        A command whose connection breaks after it left is sent again once on a new one, unless
        `repeat` is False: then its caller learns that it may have run (ConnectionError)."""
        command = hiredis.pack_command(args)
        try:
            return await self._once(command, False, wait)
        except NotSent:
            return await self._once(command, False, wait)
        except RedisConnectionError:  # a stale connection: Redis restarted meanwhile
            if not repeat:
                raise
            try:
                return await self._once(command, False, wait)
            except NotSent as err:  # but the first try may have run
                raise RedisConnectionError(str(err)) from None

    async def execute_packed(self, command: bytes, asking: bool = False, wait: bytes | None = None,
                             repeat: bool = True) -> Any:
        """execute() for a command packed already (ClusterMultiplexer's way in; execute keeps
        its own copy, which spares one Redis's calls an await); `asking`: preceded by ASKING on
        the same connection (a Redis Cluster slot being imported by this node)."""
        try:
            return await self._once(command, asking, wait)
        except NotSent:
            return await self._once(command, asking, wait)
        except RedisConnectionError:  # a stale connection: Redis restarted meanwhile
            if not repeat:
                raise
            try:
                return await self._once(command, asking, wait)
            except NotSent as err:  # but the first try may have run
                raise RedisConnectionError(str(err)) from None

    def send_now(self, *args: Any) -> asyncio.Future | None:
        """The reply's future of a command written at once on the live connection (with the
        commands this turn sent before it; a WAIT asked for this turn still goes at its end),
        rather than at the end of the turn and from a coroutine of its own: a batch of calls
        many requests wait for (engine.redis.outbox.Batches) leaves a turn or two sooner. None
        when there is no live connection: then execute(). Not repeated here: the caller goes
        execute()'s way when the connection breaks under it."""
        link = self._link
        if self._closed or link is None or link.lost is not None:
            return None
        reply = link.send(hiredis.pack_command(args))
        link.write_now()
        return reply

    async def _once(self, command: bytes, asking: bool = False, wait: bytes | None = None) -> Any:
        """The reply; NotSent when the command could not be put on a connection."""
        if self._closed:
            raise NotSent("the Redis multiplexer is closed")
        link = self._link
        try:
            if link is None or link.lost is not None:
                link = await self._connected()
            if asking:  # in the same write as the command: nothing else comes between them
                link.send(_ASKING).add_done_callback(_ignore)
            reply = link.send(command)
        except NotSent:
            raise
        except RedisConnectionError as err:
            raise NotSent(str(err)) from None
        if wait is None:
            return await reply
        replicated = link.wait(wait)
        return await reply, await replicated

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


# ---------------------------------------------------------------- Redis Cluster

SLOTS = 16384
MAX_REDIRECTIONS = 5
REFRESH_EVERY = 0.1  # seconds: the least time between two reads of the slot map
_SCRIPTED = frozenset({"EVALSHA", "EVAL", "EVALSHA_RO", "EVAL_RO", "FCALL", "FCALL_RO"})
_KEYLESS = frozenset({"PING", "ECHO", "CLIENT", "INFO", "CLUSTER", "TIME", "PUBLISH", "COMMAND",
                      "CONFIG", "DBSIZE", "WAIT", "READONLY", "READWRITE", "ROLE", "SCRIPT",
                      "FUNCTION"})
_STREAMS_AFTER = frozenset({"XREAD", "XREADGROUP"})  # their keys follow STREAMS
_EVERY_MASTER = frozenset({"SCRIPT", "FUNCTION"})  # loaded where any slot's command may need it


class CrossSlot(ResponseError):
    """A command whose keys hash to different cluster slots: no node can run it."""


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


_TAG_SLOTS: dict[str | bytes, int] = {}  # hash tag -> its slot, for the tags seen lately
_TAG_SLOTS_KEPT = 100_000


def _slot(key: Any) -> int:
    """A key's slot, by its hash tag (what Redis hashes: between the first '{' and the next
    '}', when not empty; else the whole key), remembered per tag: a conversation's every
    command hashes the same tag, and hashing it (CRC16 in Python) costs far more than finding it."""
    if not isinstance(key, str | bytes):
        key = str(key)
    opening = key.find("{" if isinstance(key, str) else b"{")
    tag = key
    if opening >= 0:
        closing = key.find("}" if isinstance(key, str) else b"}", opening + 1)
        if closing > opening + 1:
            tag = key[opening + 1:closing]
    slot = _TAG_SLOTS.get(tag)
    if slot is None:
        if len(_TAG_SLOTS) >= _TAG_SLOTS_KEPT:
            _TAG_SLOTS.clear()
        slot = _TAG_SLOTS[tag] = key_slot(_as_bytes(tag))
    return slot


def command_slot(args: tuple) -> int | None:
    """The cluster slot of a command's keys (a script's KEYS; else its first argument); None for
    a command without keys. CrossSlot when its keys hash to more than one slot."""
    name = (args[0].decode() if isinstance(args[0], bytes) else args[0]).upper()
    if name in _SCRIPTED:
        keys = args[3:3 + int(args[2])]
    elif name in _STREAMS_AFTER:  # ... STREAMS key [key ...] id [id ...]
        at = next(n for n, arg in enumerate(args) if (arg.upper() if isinstance(arg, str) else arg) in ("STREAMS", b"STREAMS"))
        keys = args[at + 1:at + 1 + (len(args) - at - 1) // 2]
    elif name in _KEYLESS or len(args) < 2:
        return None
    else:
        keys = args[1:2]
    slots = {_slot(key) for key in keys}
    if len(slots) > 1:
        first = key_slot(_as_bytes(keys[0]))
        others = [f"{key} (slot {key_slot(_as_bytes(key))})" for key in keys
                  if key_slot(_as_bytes(key)) != first]
        raise CrossSlot(f"CROSSSLOT {name}'s keys hash to different Redis Cluster slots: {keys[0]} "
                        f"(slot {first}) but {', '.join(others)}; every key of one command must "
                        "share a slot (a common {hash tag})")
    return slots.pop() if slots else None


class ClusterMultiplexer:
    """Multiplexer for a Redis Cluster: one pipelined link (a Multiplexer) per master node,
    each command sent to the master of its keys' slot.

    The slot map comes from CLUSTER SLOTS. MOVED (the slot moved for good) updates the map and
    the command goes to the named node, then the whole map is read again; ASK (the slot is
    being migrated, the key is already on the importing node) sends ASKING and the command to
    the named node, the map unchanged. A master that cannot be reached has the map read again
    from another node, and the command, which never ran, goes to the master the map then names:
    after a failover, the promoted replica. A call pays at most MAX_REDIRECTIONS hops and ends
    with the last error once `timeout` has passed since it began.
    """

    def __init__(self, connection_kwargs: dict[str, Any], connection_class: type,
                 seeds: list[tuple[str, int]], timeout: float = 1.0):
        self._kwargs, self._class, self.timeout = connection_kwargs, connection_class, timeout
        self._seeds = list(seeds)
        self._nodes: dict[tuple[str, int], Multiplexer] = {}
        self._slots: list[tuple[str, int] | None] = [None] * SLOTS
        self._refreshing: asyncio.Task | None = None
        self._refreshed_at = -REFRESH_EVERY
        self._closed = False

    def _node(self, address: tuple[str, int]) -> Multiplexer:
        node = self._nodes.get(address)
        if node is None:
            kwargs = {**self._kwargs, "host": address[0], "port": address[1], "db": 0}
            node = self._nodes[address] = Multiplexer(kwargs, self._class, self.timeout)
        return node

    async def execute(self, *args: Any, key: str | None = None, wait: bytes | None = None,
                      repeat: bool = True) -> Any:
        """As Multiplexer.execute, on the master of the command's slot (of `key`'s, for a
        command without keys such as WAIT); CrossSlot when its keys span slots (it is not sent).
        `wait` goes to the node that ran the command, on its connection."""
        slot = command_slot(args) if key is None else key_slot(_as_bytes(key))
        command = hiredis.pack_command(args)
        if (args[0].upper() if isinstance(args[0], str) else args[0].decode().upper()) in _EVERY_MASTER:
            return await self._on_every_master(command)
        loop = asyncio.get_running_loop()
        started, asking = loop.time(), False
        address = await self._master(slot)
        for hop in range(MAX_REDIRECTIONS + 1):
            last = hop == MAX_REDIRECTIONS or loop.time() - started >= self.timeout
            try:
                return await self._node(address).execute_packed(command, asking, wait, repeat)
            except Redirected as moved:
                if last:
                    raise
                address = (moved.host or address[0], moved.port)
                asking = moved.kind == "ASK"
                if not asking:
                    self._slots[moved.slot] = address
                    self._refresh_soon()
            except ResponseError as err:
                if last or not str(err).startswith("TRYAGAIN"):  # TRYAGAIN: keys mid-migration
                    raise
                await asyncio.sleep(0.01)
            except NotSent:  # the node cannot be reached: it never ran, so ask the map again
                if last:
                    raise
                before, asking = address, False
                await self._refresh()
                address = await self._master(slot)
                if address == before:
                    raise
            except (RedisConnectionError, RedisTimeoutError):  # it may have run: not repeated here
                self._refresh_soon()
                raise
        raise AssertionError("unreachable")

    async def _master(self, slot: int | None) -> tuple[str, int]:
        address = self._slots[slot] if slot is not None else self._any_master()
        if address is None:
            await self._refresh()
            address = self._slots[slot] if slot is not None else self._any_master()
            if address is None:
                raise NotSent(f"no Redis Cluster node serves slot {slot}")
        return address

    def _any_master(self) -> tuple[str, int] | None:
        return next((address for address in self._slots if address is not None), None)

    async def _on_every_master(self, command: bytes) -> Any:
        await self._master(None)
        masters = {address for address in self._slots if address is not None}
        replies = await asyncio.gather(*(self._node(address).execute_packed(command)
                                         for address in masters))
        return replies[0]

    def _refresh_soon(self) -> None:
        """Read the slot map again in the background (a reshard's many MOVED read it once per
        REFRESH_EVERY)."""
        if self._refreshing is None and not self._closed and \
                asyncio.get_running_loop().time() - self._refreshed_at >= REFRESH_EVERY:
            self._start_refresh()

    async def _refresh(self) -> None:
        """Read the slot map again (at most every REFRESH_EVERY seconds; callers share one read)."""
        if self._closed:
            raise NotSent("the Redis multiplexer is closed")
        if self._refreshing is None:
            if asyncio.get_running_loop().time() - self._refreshed_at < REFRESH_EVERY \
                    and any(self._slots):
                return
            self._start_refresh()
        await asyncio.shield(self._refreshing)

    def _start_refresh(self) -> None:
        self._refreshing = asyncio.ensure_future(self._read_slots())
        self._refreshing.add_done_callback(self._refresh_done)

    def _refresh_done(self, task: asyncio.Task) -> None:
        self._refreshing = None
        self._refreshed_at = asyncio.get_running_loop().time()
        if not task.cancelled():
            task.exception()  # retrieved: the callers waiting on it have it

    async def _read_slots(self) -> None:
        """CLUSTER SLOTS from the first node that answers: the masters known, then the seeds."""
        known = list(dict.fromkeys([*(a for a in self._slots if a is not None), *self._seeds,
                                    *self._nodes]))
        failures = []
        for address in known:
            try:
                ranges = await self._node(address).execute_packed(hiredis.pack_command(("CLUSTER", "SLOTS")))
            except (RedisConnectionError, RedisTimeoutError, ResponseError) as err:
                failures.append(f"{address[0]}:{address[1]}: {err}")
                continue
            slots: list[tuple[str, int] | None] = [None] * SLOTS
            for start, end, master, *_ in ranges:
                owner = (master[0] or address[0], int(master[1]))  # "": the node's own address
                slots[int(start):int(end) + 1] = [owner] * (int(end) - int(start) + 1)
            self._slots = slots
            return
        raise NotSent("no Redis Cluster node answered CLUSTER SLOTS: " + "; ".join(failures))

    async def aclose(self) -> None:
        """Fail every call in flight, and every later one, with a ConnectionError."""
        self._closed = True
        if self._refreshing is not None:
            self._refreshing.cancel()
        for node in self._nodes.values():
            await node.aclose()
