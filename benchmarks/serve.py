"""`kerakit serve` under load: predictions/s and latency, with and without request batching.

    python benchmarks/serve.py                 # 10 s per setting (about a minute in all)
    python benchmarks/serve.py --quick         # 3 s per setting
    python benchmarks/serve.py --run RUN       # serve this run folder (default: train the
                                               # digits CNN, 3 epochs, into a temporary folder)

The server is `kerakit serve RUN --port 0` as its own process on loopback; the load is
`--clients` (8) aiohttp clients in one asyncio loop in this process, each sending one
digit (8x8x1, JSON) per request and the next as soon as the answer arrives (a closed
loop). After a warm-up second, every request's latency (send to answer read) is kept.
Settings: batching as shipped (`--max-batch 256 --batch-wait-ms 2`) and without it
(`--max-batch 1 --batch-wait-ms 0`: one model call per request). The client and the
server share the machine's cores: on 2 cores the client's own work counts against the
server. Results: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
SETTINGS = {
    "batching (--max-batch 256 --batch-wait-ms 2)": ["--max-batch", "256", "--batch-wait-ms", "2"],
    "no batching (--max-batch 1 --batch-wait-ms 0)": ["--max-batch", "1", "--batch-wait-ms", "0"],
}


def train_digits(out: Path, epochs: int) -> Path:
    code = (
        "import sys, kerakit as kk\n"
        "run = kk.train(sys.argv[1], epochs=int(sys.argv[2]), verbose=0, "
        "overrides=[f'output.dir={sys.argv[3]}', 'train.callbacks=minimal'])\n"
        "print(run.path)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "configs" / "digits_cnn.yaml"), str(epochs),
         str(out)], capture_output=True, text=True, env=ENV, check=True,
    )  # fmt: skip
    return Path(done.stdout.strip().splitlines()[-1])


def start_server(run: Path, flags: list[str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kerakit.cli", "serve", str(run), "--port", "0", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=ENV, cwd=REPO,
    )  # fmt: skip
    line = proc.stdout.readline()
    if " on http://" not in line:
        proc.kill()
        raise SystemExit(f"kerakit serve did not start: {line!r}")
    return proc, line.split(" on ")[1].strip()


async def load(url: str, bodies: list[bytes], clients: int, warmup: float, seconds: float):
    """(latencies in s of the requests sent after the warm-up, their wall time, errors)."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients)

    async def client(k: int) -> None:
        nonlocal errors
        i = k
        while (sent := time.perf_counter()) < stop_at:
            async with session.post(f"{url}/predict", data=bodies[i % len(bodies)],
                                    headers=headers) as resp:  # fmt: skip
                await resp.read()
                ok = resp.status == 200
            if sent >= measure_from:
                latencies.append(time.perf_counter() - sent)
                errors += not ok
            i += clients

    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(k) for k in range(clients)))
    return latencies, time.perf_counter() - measure_from, errors


def stats(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"{url}/metadata") as resp:
        return json.loads(resp.read())["serving"]


def measure(run: Path, flags: list[str], bodies, clients: int, seconds: float) -> dict:
    proc, url = start_server(run, flags)
    try:
        before = stats(url)
        latencies, wall, errors = asyncio.run(load(url, bodies, clients, 1.0, seconds))
        after = stats(url)
    finally:
        proc.terminate()
        proc.wait(30)
    ms = sorted(v * 1000 for v in latencies)
    calls = after["model_calls"] - before["model_calls"]
    preds = after["predictions"] - before["predictions"]
    return {
        "requests": len(ms),
        "errors": errors,
        "per_s": len(ms) / wall,
        "p50_ms": statistics.median(ms),
        "p95_ms": ms[int(0.95 * (len(ms) - 1))],
        "p99_ms": ms[int(0.99 * (len(ms) - 1))],
        "mean_batch": preds / calls if calls else 0.0,
        "exit": proc.returncode,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s per setting")
    parser.add_argument("--seconds", type=float, help="measured seconds per setting (default 10)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--run", type=Path, help="a run folder taking 8x8x1 digits")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    from sklearn.datasets import load_digits

    images = load_digits().images[:256, :, :, None]  # raw 0..16 pixels, as the run trained on
    bodies = [json.dumps({"inputs": img.tolist()}).encode() for img in images]
    with tempfile.TemporaryDirectory(prefix="kerakit-serve-bench-") as tmp:
        run = args.run or train_digits(Path(tmp), epochs=3)
        results = {name: measure(run, flags, bodies, args.clients, seconds)
                   for name, flags in SETTINGS.items()}  # fmt: skip
    print(f"\n`kerakit serve` of the digits CNN, {args.clients} concurrent clients on loopback, "
          f"one example per request, {seconds:g} s per setting\n")  # fmt: skip
    print("| setting | predictions/s | p50 ms | p95 ms | p99 ms | mean model batch | errors |")
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['mean_batch']:.1f} | {r['errors']} |")  # fmt: skip
    on, off = results.values()
    print(f"\nbatching vs none: {on['per_s'] / off['per_s']:.2f}x predictions/s; "
          f"target: >= 1,000 predictions/s and p95 < 50 ms with batching: "
          f"{'ok' if on['per_s'] >= 1000 and on['p95_ms'] < 50 else 'MISSED'}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if all(r["errors"] == 0 and r["exit"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
