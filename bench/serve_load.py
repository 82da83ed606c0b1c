#!/usr/bin/env python3
"""Bounded load test of a running `tern serve` (Python standard library only).

CLIENTS threads each send REQUESTS completions one after another; the run stops
by itself. Prints one line (and with --json a JSON object): failures, latency
p50/p99, generated tokens per second over the whole run. Exit 1 on any failure.

usage: serve_load.py URL [--clients 8] [--requests 20] [--max-tokens 16] [--stream] [--json]
"""
import argparse
import json
import statistics
import sys
import threading
import time
import urllib.request


def one_request(url, max_tokens, stream, i):
    body = {"prompt": "Once upon a time" if i % 2 else "The little dog", "max_tokens": max_tokens,
            "temperature": 0.7, "seed": i, "stream": stream}
    req = urllib.request.Request(url + "/v1/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=300) as r:
        data = r.read().decode()
        if r.status != 200:
            raise RuntimeError(f"status {r.status}")
    if stream:
        events = [e[6:] for e in data.split("\n\n") if e.startswith("data: ")]
        if events[-1] != "[DONE]":
            raise RuntimeError("stream did not end with [DONE]")
        tokens = sum(1 for e in events[:-1] if json.loads(e)["choices"][0]["finish_reason"] is None)
    else:
        tokens = json.loads(data)["usage"]["completion_tokens"]
    return time.monotonic() - t0, tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--stream", action="store_true")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    lat, toks, fails = [], [], []
    lock = threading.Lock()

    def client(c):
        for k in range(a.requests):
            try:
                dt, n = one_request(a.url, a.max_tokens, a.stream, c * a.requests + k)
                with lock:
                    lat.append(dt), toks.append(n)
            except Exception as e:  # every failure is counted and reported
                with lock:
                    fails.append(f"client {c} request {k}: {e}")

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(a.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    lat.sort()
    res = {"clients": a.clients, "requests": a.clients * a.requests, "failures": len(fails),
           "p50_s": statistics.median(lat) if lat else None,
           "p99_s": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None,
           "generated_tokens": sum(toks), "wall_s": wall, "tokens_per_s": sum(toks) / wall}
    for f in fails[:5]:
        print(f, file=sys.stderr)
    print(f"{res['requests']} requests from {a.clients} clients: {len(fails)} failed; latency p50 "
          f"{res['p50_s'] or 0:.3f} s, p99 {res['p99_s'] or 0:.3f} s; {sum(toks)} tokens in {wall:.1f} s "
          f"({res['tokens_per_s']:.1f} tok/s)", file=sys.stderr)
    if a.json:
        print(json.dumps(res))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
