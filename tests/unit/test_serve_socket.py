"""`clientele serve` binds its own listening socket (to say in one line why it cannot listen).

asyncio disables Nagle's algorithm (TCP_NODELAY) only on sockets whose protocol says TCP; a
socket made with protocol 0 left it on, and every keep-alive response then waited about 40 ms
for the client's delayed ACK (every API latency in ``clientele bench`` rose by ~40 ms).
"""

from __future__ import annotations

import asyncio
import socket

from api.cli.serve import _bind


def test_connections_accepted_on_the_serve_socket_have_nagle_off() -> None:
    listening = _bind("127.0.0.1", 0)
    port = listening.getsockname()[1]
    accepted: list[int] = []

    async def scenario() -> None:
        def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            accepted.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connection, sock=listening)
        async with server:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            for _ in range(100):  # bounded: the callback runs on the next loop turns
                if accepted:
                    break
                await asyncio.sleep(0.01)
            writer.close()

    asyncio.run(scenario())
    assert accepted and accepted[0] != 0
