"""A TCP proxy that adds a round trip to every exchange: each chunk of
bytes, in either direction, is passed on half the round trip after it
arrived (order kept, throughput not limited). It stands in for `tc netem`,
which needs the kernel's sch_netem module (not available on every machine,
nor on this one).

    python benches/latency_proxy.py --listen 127.0.0.1:9001 --target 127.0.0.1:9000 --rtt-ms 25

Prints `listening on HOST:PORT` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import time

CHUNK = 1 << 20
# Chunks a direction holds before it stops reading (backpressure).
QUEUED_CHUNKS = 64


async def delayed_copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue = asyncio.Queue(QUEUED_CHUNKS)

    async def receive():
        while data := await reader.read(CHUNK):
            await queue.put((time.monotonic() + delay, data))
        await queue.put((time.monotonic() + delay, b""))

    async def send():
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    try:
        await asyncio.gather(receive(), send())
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def handler(target_host: str, target_port: int, one_way: float):
    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            delayed_copy(client_reader, server_writer, one_way),
            delayed_copy(server_reader, client_writer, one_way),
        )

    return handle


async def serve(listen: str, target: str, rtt_ms: float) -> None:
    host, port = listen.rsplit(":", 1)
    target_host, target_port = target.rsplit(":", 1)
    server = await asyncio.start_server(handler(target_host, int(target_port), rtt_ms / 2000), host, int(port))
    bound = server.sockets[0].getsockname()
    print(f"listening on {bound[0]}:{bound[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--listen", default="127.0.0.1:0")
    parser.add_argument("--target", required=True, help="HOST:PORT to pass connections on to")
    parser.add_argument("--rtt-ms", type=float, required=True, help="round trip added to every exchange")
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.target, args.rtt_ms))


if __name__ == "__main__":
    main()
