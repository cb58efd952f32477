"""A minimal keep-alive HTTP/1.1 client on asyncio streams, and load loops on top of it.

The load generator shares two cores with the server; a full HTTP library would spend more CPU
per request than the server's own work and distort latencies, so requests are written as bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from types import TracebackType

from infra.local_services import LOOPBACK

Request = tuple[str, str, bytes]  # method, path, JSON body
MakeRequest = Callable[[], Request]


class HttpError(Exception):
    """The server closed the connection or answered something we cannot parse."""


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise HttpError("connection closed")
        status = int(status_line.split(b" ", 2)[1])
        length, chunked = 0, False
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if not chunked:
            return status, await self.reader.readexactly(length)
        parts = []
        while size := int((await self.reader.readline()).split(b";")[0], 16):
            parts.append(await self.reader.readexactly(size))
            await self.reader.readline()
        await self.reader.readline()
        return status, b"".join(parts)

    def close(self) -> None:
        self.writer.close()


class Pool:
    """``size`` connections to ``127.0.0.1:port``, authenticated with ``token``."""

    def __init__(self, port: int, token: str, size: int) -> None:
        self.port = port
        self.size = size
        self.auth = f"Authorization: Bearer {token}\r\n".encode()
        self.idle: asyncio.Queue[Connection] = asyncio.Queue()
        self.all: list[Connection] = []

    async def __aenter__(self) -> Pool:
        for _ in range(self.size):
            reader, writer = await asyncio.open_connection(LOOPBACK, self.port)
            connection = Connection(reader, writer)
            self.all.append(connection)
            self.idle.put_nowait(connection)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for connection in self.all:
            connection.close()

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        """Send one request on an idle connection (waiting for one); (status, body)."""
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {LOOPBACK}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}"
        ).encode()
        connection = await self.idle.get()
        try:
            return await asyncio.wait_for(connection.request(head + self.auth + b"\r\n", body), 30)
        finally:
            self.idle.put_nowait(connection)


async def closed_loop(
    pool: Pool, make: MakeRequest, total: int, concurrency: int
) -> tuple[list[float], float, int]:
    """``concurrency`` workers send ``total`` requests back to back.

    Returns the latencies (s) of successful requests, the elapsed seconds and the failures.
    """
    latencies: list[float] = []
    failures = 0
    remaining = total

    async def worker() -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            sent = time.perf_counter()
            status, _ = await pool.request(*make())
            if status >= 400:
                failures += 1
            else:
                latencies.append(time.perf_counter() - sent)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, failures


async def open_loop(
    pool: Pool,
    make: MakeRequest,
    per_s: float,
    seconds: float,
    on_done: Callable[[float, int, bytes], None] = lambda _at, _status, _body: None,
) -> tuple[list[float], int, float]:
    """Send at a fixed rate for ``seconds``, whatever the answers' speed (no coordinated
    omission: a latency counts from the request's *scheduled* time, waiting for a free
    connection included). ``on_done(ack_time, status, body)`` sees each answer.

    Returns the latencies (s) of successful requests, the failures and the achieved rate.
    """
    latencies: list[float] = []
    failures = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(scheduled: float, request: Request) -> None:
        nonlocal failures
        status, body = await pool.request(*request)
        done = time.perf_counter()
        on_done(done, status, body)
        if status >= 400:
            failures += 1
        else:
            latencies.append(done - scheduled)

    started = time.perf_counter()
    count = int(per_s * seconds)
    for n in range(count):
        scheduled = started + n / per_s
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(scheduled, make()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return latencies, failures, count / (time.perf_counter() - started)
