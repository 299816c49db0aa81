"""A TCP proxy in front of a real redis-server that makes Redis slow to answer chosen commands.

Every byte goes through unchanged. When a command that `slow` picks (by default COMMIT's
EVALSHA) passes towards Redis while `delay` is set, Redis's replies on that connection are
held back until `delay` seconds after it: Redis has run the command, its answer is late, as
when Redis is slow to answer a commit. `swallow` drops a chosen command instead and cuts
the connection (it never reaches Redis), as when a connection dies with the command unsent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import hiredis

from engine.redis.store import COMMIT

Command = list[bytes]


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
        hold_until = [0.0]

        async def towards_redis() -> None:
            reader = hiredis.Reader()
            while data := await client_in.read(65536):
                reader.feed(data)
                passed = []
                while (command := reader.gets()) is not False:
                    slow = self.slow(command)
                    if slow and (self.delay or self.swallow):
                        self.held += 1
                        hold_until[0] = loop.time() + self.delay
                    if slow and self.swallow:  # the connection dies with the command unsent
                        if passed:
                            redis_out.write(b"".join(passed))
                        return
                    passed.append(hiredis.pack_command(tuple(command)))
                if passed:
                    redis_out.write(b"".join(passed))

        async def towards_client() -> None:
            while data := await redis_in.read(65536):
                wait = hold_until[0] - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                client_out.write(data)

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
