#!/usr/bin/env python3
"""A purpose-built "internet latency" server for `make bench` (127.0.0.1 only).

Answers every request with 201 and a small CallRail-like company object after
--delay-ms, over HTTP/1.1 keep-alive, so a client with C requests in flight can
at best finish N requests in N x delay / C.  asyncio: one event loop, no thread
per connection and no per-request logging, so the server adds well under a
millisecond to the delay even with 64 connections (the fake CallRail server,
tests/fake_callrail.py, parses, validates and logs every request; its own cost
would show up in the figure).

  python3 bench/delay_server.py --port 0 --port-file F --delay-ms 50 [--max-seconds 1800]

GET /__bench/count returns {"requests": N} (API requests answered so far).
"""
import argparse
import asyncio
import json
import os
import signal
import sys

BODY = (b'{"id":"COM8154748ae6bd4e278a7cddd38a662f4f","name":"Bench Co",'
        b'"time_zone":"America/New_York","created_at":"2024-01-01T00:00:00.000-05:00",'
        b'"status":"active","lead_scoring_enabled":true,"swap_exclude_jquery":null,'
        b'"swap_ppc_override":null,"swap_landing_override":null,"swap_cookie_duration":6,'
        b'"callscore_enabled":false,"keyword_spotting_enabled":false,"form_capture":null}')


class State:
    requests = 0


def response(status, body, close):
    reason = {200: "OK", 201: "Created", 400: "Bad Request"}.get(status, "Status")
    head = ("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
            % (status, reason, len(body), "Connection: close\r\n" if close else ""))
    return head.encode("latin-1") + body


async def handle(reader, writer, delay):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            parts = line.decode("latin-1").split()
            if len(parts) != 3:
                writer.write(response(400, b'{"error":"bad request line"}', True))
                break
            method, target, version = parts
            length = 0
            close = version != "HTTP/1.1"
            expect = False
            while True:
                h = await reader.readline()
                if not h:
                    return
                if h in (b"\r\n", b"\n"):
                    break
                name, _, value = h.decode("latin-1").partition(":")
                name = name.strip().lower()
                value = value.strip()
                if name == "content-length":
                    length = int(value)
                elif name == "connection":
                    close = "close" in value.lower() or (version != "HTTP/1.1"
                                                         and "keep-alive" not in value.lower())
                elif name == "expect" and value.lower() == "100-continue":
                    expect = True
            if expect:
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if length:
                await reader.readexactly(length)
            if target.startswith("/__bench/count"):
                writer.write(response(200, json.dumps({"requests": State.requests}).encode(),
                                      close))
            else:
                State.requests += 1
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(response(201 if method == "POST" else 200, BODY, close))
            await writer.drain()
            if close:
                break
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        pass
    finally:
        try:
            writer.close()
        except Exception:  # noqa: BLE001 - closing a dead socket
            pass


async def main_async(args):
    delay = args.delay_ms / 1000.0
    server = await asyncio.start_server(lambda r, w: handle(r, w, delay), "127.0.0.1", args.port,
                                        backlog=1024)
    port = server.sockets[0].getsockname()[1]
    if args.port_file:
        tmp = "%s.tmp.%d" % (args.port_file, os.getpid())
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.replace(tmp, args.port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
    except asyncio.TimeoutError:
        pass
    server.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--delay-ms", type=float, default=50.0)
    ap.add_argument("--max-seconds", type=float, default=1800.0,
                    help="exit on its own after this many seconds")
    asyncio.run(main_async(ap.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
