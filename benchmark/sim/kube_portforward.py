"""The fake API's port-forward: a pod's port streamed to the backend that simulates it, over the
websocket channel protocol the ``kubernetes`` client speaks (``v4.channel.k8s.io``: data channel
0, error channel 1, each opened by a frame carrying the port number, little-endian: kubernetes
``stream/ws_client.py`` ``PortForward``)."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

__all__ = ["PORTFORWARD_PROTOCOL", "serve_portforward"]

PORTFORWARD_PROTOCOL = "v4.channel.k8s.io"


async def serve_portforward(request: web.Request, backend: str, port: int) -> web.WebSocketResponse:
    """Answer ``request`` (a port-forward upgrade to ``port``) by relaying to ``backend``'s URL."""
    ws = web.WebSocketResponse(protocols=(PORTFORWARD_PROTOCOL,))
    await ws.prepare(request)
    header = port.to_bytes(2, "little")
    await ws.send_bytes(b"\x00" + header)  # data channel opened
    await ws.send_bytes(b"\x01" + header)  # error channel opened
    target = urlsplit(backend)
    try:
        reader, writer = await asyncio.open_connection(target.hostname, target.port)
    except OSError as e:
        await ws.send_bytes(b"\x01" + f"connection refused to port {port}: {e}".encode())
        await ws.close()
        return ws

    async def upstream() -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY and msg.data[:1] == b"\x00":
                writer.write(msg.data[1:])
                await writer.drain()
        writer.close()

    async def downstream() -> None:
        while chunk := await reader.read(65536):
            await ws.send_bytes(b"\x00" + chunk)
        await ws.close()

    tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        writer.close()
        if not ws.closed:
            await ws.close()
    return ws
