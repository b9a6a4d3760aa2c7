"""`kerakit serve`: a finished run behind HTTP, answering what `kerakit predict` prints.

    kerakit serve runs/digits-cnn/20261205-183901 --port 8000

    from kerakit.serve import serve
    serve("runs/digits-cnn/20261205-183901", port=8000)   # until SIGTERM / Ctrl-C

`model.py` holds the model (request checks, one compiled call, the answer), `batcher.py`
gathers concurrent requests into one call, `app.py` is the aiohttp side. Needs aiohttp:
`pip install "kerakit[serve]"`.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable

from kerakit.errors import KerakitError

DEFAULT_HOST = "127.0.0.1"


def require_aiohttp() -> None:
    """A KerakitError naming the extra to install when aiohttp is missing."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise KerakitError(
            'kerakit serve needs aiohttp, which is not installed: pip install "kerakit[serve]"'
        ) from None


def serve(run_or_model: str | os.PathLike, *, host: str = DEFAULT_HOST, port: int = 8000,
          max_batch: int = 256, max_body: int = 10_000_000, batch_wait_ms: float = 2.0,
          trusted: bool = False, print_fn: Callable[[str], None] | None = None) -> None:  # fmt: skip
    """Serve a run folder (or model file) over HTTP until SIGTERM or SIGINT.

    Runs its own asyncio loop and must be called from the main thread of a script (not
    from a notebook's running loop: start `kerakit serve` there instead).

    Args:
        run_or_model: a run folder, or a `.keras`/`.h5`/SavedModel path.
        host: the address to listen on; default 127.0.0.1 (this machine only). Any
            other address lets whoever reaches it use the model: there is no authentication.
        port: the port; 0 picks a free one (the printed line names it).
        max_batch: the most examples one request may hold, and one model call takes.
        max_body: the largest request body in bytes (413 beyond it).
        batch_wait_ms: how long a request may wait for others to share its model call.
        trusted: allow code in the model file (see docs/security.md).
        print_fn: where the `serving ... on http://HOST:PORT` line goes (default: stdout,
            flushed).
    """
    require_aiohttp()
    import asyncio

    from kerakit.serve.app import make_app, run_app
    from kerakit.serve.model import ServedModel

    if print_fn is None:

        def print_fn(line: str) -> None:
            print(line, flush=True)

    for name, value, low in (("port", port, 0), ("max_batch", max_batch, 1),
                             ("max_body", max_body, 1), ("batch_wait_ms", batch_wait_ms, 0)):  # fmt: skip
        if value < low or (name == "port" and value > 65535):
            raise KerakitError(f"{name.replace('_', '-')} {value}: give a number >= {low}"
                               + (" and <= 65535" if name == "port" else ""))  # fmt: skip
    if not _loopback(host):
        print(f"warning: serving on {host}: anyone who can reach it can use the model "
              "(kerakit serve has no authentication)", file=sys.stderr)  # fmt: skip
    served = ServedModel(run_or_model, trusted=trusted)
    app = make_app(served, max_batch=max_batch, max_body=max_body, batch_wait_ms=batch_wait_ms)
    asyncio.run(run_app(app, host, port, str(run_or_model), print_fn))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
