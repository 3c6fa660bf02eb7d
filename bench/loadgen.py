"""A closed-loop load generator in its own process: N concurrent clients, one URL, for a
bounded time. `python -m bench.loadgen URL --method GET --concurrency 16 --seconds 5`
prints {"requests", "seconds", "rps", "errors", "p50_ms", "p99_ms"} as JSON."""

import argparse
import asyncio
import json
import statistics
import time

import httpx2 as httpx


async def _client(
    client: httpx.AsyncClient,
    args: argparse.Namespace,
    deadline: float,
    latencies: list[float],
    errors: list[int],
) -> None:
    while time.monotonic() < deadline and len(latencies) < args.max_requests:
        started = time.perf_counter()
        try:
            response = await client.request(args.method, args.url, content=args.body)
        except httpx.HTTPError:
            status = 0  # no answer at all (timeout, reset): counted, not fatal
        else:
            status = response.status_code
        latencies.append(time.perf_counter() - started)
        if status == 0 or status >= 400:
            errors.append(status)


async def main(args: argparse.Namespace) -> dict[str, float]:
    headers = dict(h.split(":", 1) for h in args.header)
    limits = httpx.Limits(max_connections=args.concurrency)
    latencies: list[float] = []
    errors: list[int] = []
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
        deadline = time.monotonic() + args.seconds
        started = time.perf_counter()
        await asyncio.gather(
            *(_client(client, args, deadline, latencies, errors) for _ in range(args.concurrency))
        )
        elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests": len(ordered),
        "seconds": elapsed,
        "rps": len(ordered) / elapsed,
        "errors": len(errors),
        "p50_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1000,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--method", default="GET")
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--body", default=None)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--max-requests", type=int, default=1_000_000)
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
