"""A TCP proxy in front of a real redis-server that makes Redis slow to answer chosen commands.

Commands go through unchanged. When a command that `slow` picks (by default COMMIT's
EVALSHA) passes towards Redis while `delay` is set, its reply is held back until `delay`
seconds after the command passed (and the replies after it on that connection wait for it,
in order): Redis has run the command, its answer is late, as when Redis is slow to answer a
commit. Replies pass byte for byte, each on its own clock. `swallow` drops a chosen command instead and cuts
the connection (it never reaches Redis), as when a connection dies with the command unsent."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable

import hiredis

from engine.redis.store import COMMIT

Command = list[bytes]


def reply_end(buffer: bytes | bytearray, at: int = 0) -> int | None:
    """Where the RESP2/RESP3 reply starting at `at` ends (None: not all of it is in yet)."""
    line_end = buffer.find(b"\r\n", at)
    if line_end < 0:
        return None
    kind, head, after = buffer[at:at + 1], buffer[at + 1:line_end], line_end + 2
    if kind in b"$!=":  # blob: a length, then as many bytes and CRLF (-1: null)
        length = int(head)
        if length < 0:
            return after
        return after + length + 2 if len(buffer) >= after + length + 2 else None
    if kind in b"*~>%|":  # aggregates: so many replies (maps and attributes: twice as many)
        count = int(head)
        count = max(count, 0) * (2 if kind in b"%|" else 1)
        for _ in range(count):
            after = reply_end(buffer, after)
            if after is None:
                return None
        return reply_end(buffer, after) if kind == b"|" else after  # an attribute precedes its reply
    return after  # simple string, error, number, double, boolean, null, big number


def is_commit(command: Command) -> bool:
    return len(command) > 1 and command[0].upper() == b"EVALSHA" and command[1] == COMMIT.sha.encode()


class DelayingProxy:
    def __init__(self, redis_port: int, slow: Callable[[Command], bool] = is_commit):
        self.redis_port, self.slow = redis_port, slow
        self.delay = 0.0  # seconds Redis's replies are held after a slow command
        self.swallow = False  # drop slow commands instead of passing them on
        self.held = 0  # slow commands seen while delay or swallow was set
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> DelayingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        self._server.close()
        for task in list(self._links):
            task.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._links.add(task)
        try:
            redis_in, redis_out = await asyncio.open_connection("127.0.0.1", self.redis_port)
        except OSError:
            client_out.close()
            self._links.discard(task)
            return
        loop = asyncio.get_running_loop()
        release_at: deque[float] = deque()  # per command passed, in order: when its reply may go

        async def towards_redis() -> None:
            reader = hiredis.Reader()
            while data := await client_in.read(65536):
                reader.feed(data)
                passed = []
                while (command := reader.gets()) is not False:
                    slow = self.slow(command)
                    if slow and (self.delay or self.swallow):
                        self.held += 1
                    if slow and self.swallow:  # the connection dies with the command unsent
                        if passed:
                            redis_out.write(b"".join(passed))
                        return
                    release_at.append(loop.time() + self.delay if slow else 0.0)
                    passed.append(hiredis.pack_command(tuple(command)))
                if passed:
                    redis_out.write(b"".join(passed))

        async def towards_client() -> None:
            buffer = bytearray()
            while data := await redis_in.read(65536):
                buffer += data
                while (end := reply_end(buffer)) is not None:
                    wait = release_at.popleft() - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    client_out.write(bytes(buffer[:end]))
                    del buffer[:end]

        try:
            pumps = [asyncio.ensure_future(towards_redis()), asyncio.ensure_future(towards_client())]
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            for writer in (client_out, redis_out):
                writer.transport.abort()
            self._links.discard(task)
