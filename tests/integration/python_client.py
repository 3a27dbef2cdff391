#!/usr/bin/python3
"""A third-party WebSocket client (Debian's python3-websockets) for the integration tests.

Connects to the URL given, prints "open", then prints each message it receives as one JSON
line, and after COUNT messages closes cleanly and prints the close code. Bounded: gives up
after 30 seconds in all.
"""
import asyncio
import json
import sys

import websockets


async def main(url: str, count: int) -> None:
    async with websockets.connect(url, max_size=None) as ws:
        print("open", flush=True)
        for _ in range(count):
            message = await asyncio.wait_for(ws.recv(), 20)
            print(json.dumps({"type": type(message).__name__, "data": message}), flush=True)
        await ws.close()
        print("closed", ws.close_code, flush=True)


asyncio.run(asyncio.wait_for(main(sys.argv[1], int(sys.argv[2])), 30))
