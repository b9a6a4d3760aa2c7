"""The HTTP side of `kerakit serve`: aiohttp routes, request checks, JSON errors, shutdown.

    POST /predict    {"inputs": [...]} or image files as multipart/form-data -> predictions
    GET  /health     {"status": "ok"}
    GET  /metadata   inputs, outputs, classes, task, versions, limits, batching counters

Every failure is a JSON `{"error": "..."}` with a 4xx status (a 500 only for a bug, whose
traceback goes to stderr, never into the response). aiohttp (asyncio): one well-kept
package with the server, multipart parsing, body limits and a graceful shutdown that
lets the requests in flight finish.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import traceback
from collections.abc import Callable

from aiohttp import web

from kerakit.errors import KerakitError
from kerakit.serve.batcher import Batcher, ShuttingDown
from kerakit.serve.model import RequestError, ServedModel

ROUTES = "POST /predict, GET /health, GET /metadata"
SERVED = web.AppKey("served", ServedModel)
BATCHER = web.AppKey("batcher", Batcher)
LIMITS = web.AppKey("limits", dict)


def make_app(served: ServedModel, *, max_batch: int = 256, max_body: int = 10_000_000,
             batch_wait_ms: float = 2.0) -> web.Application:  # fmt: skip
    """The aiohttp application serving `served` (start it with aiohttp's runners)."""
    app = web.Application(client_max_size=max_body, middlewares=[_errors])
    app[SERVED] = served
    app[BATCHER] = Batcher(served.predict, max_batch=max_batch, wait_ms=batch_wait_ms)
    app[LIMITS] = {"max_batch": max_batch, "max_body": max_body, "batch_wait_ms": batch_wait_ms}
    app.router.add_post("/predict", _predict)
    app.router.add_get("/health", _health)
    app.router.add_get("/metadata", _metadata)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


async def _start(app: web.Application) -> None:
    app[BATCHER].start()


async def _stop(app: web.Application) -> None:
    await app[BATCHER].stop()


# --------------------------------------------------------------------------- routes


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _metadata(request: web.Request) -> web.Response:
    app = request.app
    serving = {**app[LIMITS], **app[BATCHER].stats}
    return web.json_response({**app[SERVED].metadata(), "serving": serving})


async def _predict(request: web.Request) -> web.Response:
    app = request.app
    served, batcher, limits = app[SERVED], app[BATCHER], app[LIMITS]
    top = _top(request.query.get("top", "3"))
    length = request.content_length
    if length is not None and length > limits["max_body"]:
        raise _too_large(limits["max_body"], length)
    if request.content_type == "multipart/form-data":
        files = await _files(request)
        loop = asyncio.get_running_loop()  # decoding images takes time: not in the event loop
        x, n, labels = await loop.run_in_executor(
            None, served.from_files, files, limits["max_batch"]
        )
    else:
        body = await request.read()
        x, n, labels = served.from_json(_json(body), limits["max_batch"])
    outputs, batch = await batcher.submit(x, n)
    rows = served.rows(outputs, labels, top)
    return web.json_response({"predictions": rows}, headers={"X-Kerakit-Batch": str(batch)})


async def _files(request: web.Request) -> list[tuple[str, bytes]]:
    form = await request.post()  # aiohttp holds it to client_max_size (--max-body)
    files = []
    for key, value in form.items():
        if not isinstance(value, web.FileField):
            raise RequestError(
                f"multipart field {key!r} is not a file: send each input as a file part"
            )
        files.append((value.filename or key, value.file.read()))
    return files


def _json(body: bytes):
    if not body:
        raise RequestError('the body is empty: send {"inputs": [...]} as JSON')

    def refuse(name: str):
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(body, parse_constant=refuse)
    except RecursionError:
        raise RequestError("the JSON body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(
            f'the body is not JSON ({exc}): send {{"inputs": [...]}} with Content-Type: '
            "application/json, or image files as multipart/form-data"
        ) from None


def _top(text: str) -> int:
    try:
        top = int(text)
    except ValueError:
        top = 0
    if not 1 <= top <= 1000:
        raise RequestError(f"?top={text}: give a whole number of classes from 1 to 1000")
    return top


def _too_large(limit: int, length: int | None = None) -> RequestError:
    size = f"{length:,} bytes" if length is not None else "over the limit"
    return RequestError(
        f"the request body is {size}; this server takes at most {limit:,} bytes (--max-body): "
        "send fewer or smaller inputs per request",
        status=413,
    )


# --------------------------------------------------------------------------- errors


@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    """Every failure as `{"error": ...}` with its status; never a traceback in a response."""
    try:
        return await handler(request)
    except RequestError as exc:
        return _error(exc.status, str(exc))
    except KerakitError as exc:  # a DataError of kerakit predict's readers: the input's fault
        return _error(400, str(exc))
    except web.HTTPRequestEntityTooLarge:
        return _error(413, str(_too_large(request.app[LIMITS]["max_body"])))
    except web.HTTPMethodNotAllowed as exc:
        allowed = ", ".join(sorted(exc.allowed_methods))
        return _error(405, f"{request.method} {request.path} is not allowed; use {allowed}",
                      {"Allow": ",".join(sorted(exc.allowed_methods))})  # fmt: skip
    except web.HTTPNotFound:
        return _error(404, f"no such path {request.path}; this server answers {ROUTES}")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.text or exc.reason)
    except ShuttingDown as exc:
        return _error(503, str(exc))
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug (or the model failed): the traceback in the log only
        print(f"kerakit serve: {request.method} {request.path} failed:", file=sys.stderr)
        traceback.print_exc(file=sys.stderr)
        return _error(500, f"internal error: {type(exc).__name__}: {str(exc)[:300]}")


def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


# --------------------------------------------------------------------------- running


async def run_app(app: web.Application, host: str, port: int, label: str,
                  print_fn: Callable[[str], None]) -> None:  # fmt: skip
    """Serve until SIGTERM or SIGINT, then stop taking connections, let the requests in
    flight finish (up to 10 s), stop the batcher, and return."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise KerakitError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); "
            "choose another --port (0 picks a free one)"
        ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    address = runner.addresses[0]
    shown = f"[{address[0]}]" if ":" in address[0] else address[0]
    print_fn(f"serving {label} on http://{shown}:{address[1]}")
    try:
        await stop.wait()
    finally:
        print_fn("shutting down")
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
