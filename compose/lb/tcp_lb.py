"""A small TCP load balancer: each new client connection goes to the next replica of a service.

Replicas are found by resolving the backend's DNS name(s) on every connection (Docker's embedded
DNS answers a compose service name with all its replicas), so `--scale engine=N` needs no
reconfiguration; a comma-separated host list (``h1,h2:port``) names replicas explicitly. TCP-level, so HTTP, keep-alive and SSE streaming pass through untouched.
Standard library only.

    python3 tcp_lb.py --listen 0.0.0.0:8080 --backend engine:8080
"""
import argparse
import asyncio
import itertools
import socket

counter = itertools.count()


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def replicas(hosts: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    addresses = set()
    for host in hosts.split(","):
        addresses |= {info[4][0] for info in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    return sorted(addresses)


def handler(host: str, port: int):
    async def handle(client_reader, client_writer):
        turn = next(counter)  # taken on arrival, so connections alternate in the order they came
        try:
            addresses = await replicas(host, port)
            target = addresses[turn % len(addresses)]
            upstream_reader, upstream_writer = await asyncio.open_connection(target, port)
        except OSError as err:
            print(f"no replica of {host}:{port} reachable: {err}", flush=True)
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))
    return handle


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="0.0.0.0:8080")
    parser.add_argument("--backend", required=True, help="host:port of the service (all its addresses are used)")
    args = parser.parse_args()
    listen_host, listen_port = args.listen.rsplit(":", 1)
    host, port = args.backend.rsplit(":", 1)
    server = await asyncio.start_server(handler(host, int(port)), listen_host, int(listen_port))
    print(f"tcp-lb on {args.listen} -> every replica of {args.backend}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
