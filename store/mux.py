"""One multiplexed connection for the hot-path scripts (a turn's read and apply, the WeChat nonce).

redis-py takes a pooled connection per command, checks its health, packs, writes, waits for that
one reply and gives the connection back: about a third of the gateway's CPU per message went
there. Redis answers the commands of one connection in order, so many coroutines can share ONE
connection: each call writes its command (the writes of one loop iteration go out in one
syscall) and waits for its own reply, matched first in, first out (hiredis parses the stream).

:func:`attach` puts such a connection beside a redis-py client (``sulai serve`` does, in
gateway/runtime.py); :func:`register_script` then returns a script that runs over it, and a
plain redis-py script when nothing is attached (tests, CLI), so callers need not know. A lost
connection fails the calls waiting on it with redis-py's ConnectionError (the webhook answers
5xx and the provider retries, as with redis-py) and the next call connects again.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import weakref
from collections.abc import Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, NoScriptError, ResponseError

Arg = str | bytes | int | float


def _pack(args: Sequence[Arg]) -> bytes:
    """A command in RESP: an array of bulk strings (numbers as redis-py writes them)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            b = a.encode()
        elif isinstance(a, bytes):
            b = a
        elif isinstance(a, int):
            b = b"%d" % a
        else:
            b = repr(a).encode()
        out.append(b"$%d\r\n" % len(b))
        out.append(b)
        out.append(b"\r\n")
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    def __init__(self, mux: Mux) -> None:
        self.mux = mux
        self.reader = hiredis.Reader()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.mux._waiting
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            fut = waiting.popleft()
            if not fut.done():  # a caller that was cancelled no longer wants its reply
                if isinstance(reply, hiredis.ReplyError):
                    fut.set_exception(_error(str(reply)))
                else:
                    fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.mux._lost(exc)


def _error(message: str) -> ResponseError:
    return NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)


class Mux:
    """One connection shared by every caller, replies matched in order."""

    def __init__(self, connection_kwargs: dict[str, Any]) -> None:
        self._kw = connection_kwargs
        self._transport: asyncio.Transport | None = None
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._buffer: list[bytes] = []
        self._connecting: asyncio.Lock | None = None
        self._closed = False

    async def _connect(self) -> asyncio.Transport:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._transport is not None and not self._transport.is_closing():
                return self._transport
            if self._closed:
                raise ConnectionError("the multiplexed connection was closed")
            loop = asyncio.get_running_loop()
            kw = self._kw
            try:
                if kw.get("path"):
                    transport, _ = await loop.create_unix_connection(lambda: _Protocol(self), kw["path"])
                else:
                    host, port = kw.get("host", "localhost"), int(kw.get("port", 6379))
                    transport, _ = await loop.create_connection(lambda: _Protocol(self), host, port)
            except OSError as exc:
                raise ConnectionError(f"cannot connect to Redis: {exc}") from exc
            self._transport = transport
            hello: list[list[Arg]] = []
            if kw.get("password"):
                user = kw.get("username")
                hello.append(["AUTH", user, kw["password"]] if user else ["AUTH", kw["password"]])
            if int(kw.get("db") or 0):
                hello.append(["SELECT", int(kw["db"])])
            for command in hello:
                await self._send(command)
            return self._transport

    def _lost(self, exc: Exception | None) -> None:
        self._transport = None
        waiting, self._waiting = self._waiting, collections.deque()
        self._buffer.clear()
        for fut in waiting:
            if not fut.done():
                fut.set_exception(ConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def _flush(self) -> None:
        if self._buffer and self._transport is not None:
            self._transport.write(b"".join(self._buffer))
        self._buffer.clear()

    async def _send(self, args: Sequence[Arg]) -> Any:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._buffer:
            # Commands issued in this loop iteration leave together, in one write.
            asyncio.get_running_loop().call_soon(self._flush)
        self._buffer.append(_pack(args))
        self._waiting.append(fut)
        return await fut

    async def execute(self, *args: Arg) -> Any:
        if self._transport is None or self._transport.is_closing():
            await self._connect()
        return await self._send(args)

    async def aclose(self) -> None:
        self._closed = True
        if self._transport is not None:
            self._transport.close()
            self._transport = None


class MuxScript:
    """Called like redis-py's AsyncScript: ``await script(keys=[...], args=[...])``."""

    def __init__(self, mux: Mux, source: str) -> None:
        self.mux = mux
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Any:
        try:
            return await self.mux.execute("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            # A restarted or flushed server: load the script and run it again.
            await self.mux.execute("SCRIPT", "LOAD", self.source)
            return await self.mux.execute("EVALSHA", self.sha, len(keys), *keys, *args)


_attached: weakref.WeakKeyDictionary[aioredis.Redis, Mux] = weakref.WeakKeyDictionary()


def attach(redis: aioredis.Redis) -> Mux | None:
    """Give ``redis`` a multiplexed connection for its scripts (same server, credentials, db).
    None when the client connects in a way this module does not (TLS): it keeps redis-py."""
    pool = redis.connection_pool
    if pool.connection_class.__name__ not in ("Connection", "UnixDomainSocketConnection"):
        return None
    if pool.connection_kwargs.get("decode_responses"):
        return None  # the scripts' callers expect bytes, as the gateway's client gives them
    mux = Mux(dict(pool.connection_kwargs))
    _attached[redis] = mux
    return mux


async def detach(redis: aioredis.Redis) -> None:
    mux = _attached.pop(redis, None)
    if mux is not None:
        await mux.aclose()


def register_script(redis: aioredis.Redis, source: str) -> Any:
    """A script over the attached multiplexed connection, else redis-py's own."""
    mux = _attached.get(redis)
    return MuxScript(mux, source) if mux is not None else redis.register_script(source)
