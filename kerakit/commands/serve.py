"""`kerakit serve RUN [--host H] [--port N] [--max-batch N] [--max-body BYTES]
[--batch-wait-ms MS] [--unsafe]`: a run folder or model file behind HTTP (docs/serve.md).

    kerakit serve runs/digits-cnn/20261205-183901 --port 8000
    curl -s localhost:8000/predict -H 'Content-Type: application/json' -d '{"inputs": [...]}'
    curl -s localhost:8000/predict -F image=@seven.png

Listens on 127.0.0.1 unless `--host` names another address; prints `serving RUN on
http://HOST:PORT` once it listens; SIGTERM or Ctrl-C stops it cleanly (exit 0).
"""

from __future__ import annotations

import argparse

NAME = "serve"
HELP = "serve a run folder or model file over HTTP (POST /predict, GET /health, GET /metadata)"


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="RUN_OR_MODEL")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on (default 127.0.0.1: this machine only; "
                        "another address lets anyone who reaches it use the model)")  # fmt: skip
    parser.add_argument("--port", type=int, default=8000, help="default 8000; 0 picks a free one")
    parser.add_argument("--max-batch", type=int, default=256, metavar="N",
                        help="the most examples per request and per model call (default 256)")  # fmt: skip
    parser.add_argument("--max-body", type=int, default=10_000_000, metavar="BYTES",
                        help="the largest request body (default 10,000,000 bytes)")  # fmt: skip
    parser.add_argument("--batch-wait-ms", type=float, default=2.0, metavar="MS",
                        help="how long a request may wait for others to share its model call "
                        "(default 2; 0: only those already waiting)")  # fmt: skip
    parser.add_argument("--unsafe", action="store_true",
                        help="trust the model file (allows code in it; see docs/security.md)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from kerakit.serve import serve

    serve(args.model, host=args.host, port=args.port, max_batch=args.max_batch,
          max_body=args.max_body, batch_wait_ms=args.batch_wait_ms, trusted=args.unsafe)  # fmt: skip
    return 0
