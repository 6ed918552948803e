#!/usr/bin/env python3
"""Opens N idle mutual-TLS connections to a server and holds them, for perf/memory.sh.

    hold.py --port P --ca server-ca.pem --cert client.pem --key client.key -n 10000
            [--concurrency 200] [--timeout 300]

Protocol on stdin/stdout (one line each), so the caller can measure the server in between:
    prints "established N FAILED"   all handshakes done (N connections open, idle)
    reads  "request"                sends one keep-alive GET / on every connection, reads the answer
    prints "requested N FAILED"     connections open and idle again, each after one request
    reads  "close"                  closes everything
    prints "closed"
Every phase is bounded by --timeout seconds. Standard library only (asyncio + ssl).
"""

import argparse
import asyncio
import ssl
import sys


async def open_one(host, port, ctx, sem, conns, errors):
    async with sem:
        try:
            r, w = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost")
            conns.append((r, w))
        except Exception as e:  # noqa: BLE001 - counted and reported
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1


async def request_one(conn, sem, errors):
    r, w = conn
    async with sem:
        try:
            w.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: perf-hold\r\n\r\n")
            await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await r.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                errors["status"] = errors.get("status", 0) + 1
        except Exception as e:  # noqa: BLE001
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1


async def readline():
    return (await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)).strip()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()

    ctx = ssl.create_default_context(cafile=a.ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(a.cert, a.key)
    sem = asyncio.Semaphore(a.concurrency)
    conns, errors = [], {}

    await asyncio.wait_for(
        asyncio.gather(*(open_one(a.host, a.port, ctx, sem, conns, errors) for _ in range(a.n))),
        a.timeout)
    # Let the server finish its side (it handles the client Finished after we return).
    await asyncio.sleep(1)
    print(f"established {len(conns)} {sum(errors.values())} {errors}", flush=True)

    cmd = await asyncio.wait_for(readline(), a.timeout)
    if cmd == "request":
        errors = {}
        await asyncio.wait_for(
            asyncio.gather(*(request_one(c, sem, errors) for c in conns)), a.timeout)
        await asyncio.sleep(1)
        print(f"requested {len(conns)} {sum(errors.values())} {errors}", flush=True)
        cmd = await asyncio.wait_for(readline(), a.timeout)

    for _, w in conns:
        w.transport.abort()
    print("closed", flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except asyncio.TimeoutError:
        print("timeout", flush=True)
        sys.exit(1)
