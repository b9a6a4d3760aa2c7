"""Request batching: concurrent requests gathered into one model call.

    batcher = Batcher(predict, max_batch=256, wait_ms=2.0)
    outputs, batch_size = await batcher.submit(x, n)   # x: n examples (an array or a dict)

Each request waits in a queue; one task takes the oldest and gathers whole requests
behind it until the batch would exceed `max_batch` examples, or holds as many as the
last batch did (under a steady load the same clients are back: no reason to wait), or
the oldest has waited `wait_ms`. The batch runs as ONE call of `predict` in a single worker thread (the event
loop keeps reading requests meanwhile, so the next batch fills while this one runs),
and each request gets its own rows of the outputs back. `wait_ms=0` takes only what is
already queued; `max_batch=1` runs each one-example request alone.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class ShuttingDown(RuntimeError):
    """A request the batcher will not run: the server is stopping (HTTP 503)."""


@dataclass
class _Pending:
    x: Any
    n: int
    future: asyncio.Future
    since: float = field(default_factory=time.perf_counter)


class Batcher:
    """Gathers concurrent requests into batches for one `predict(x) -> outputs` call each.

    Args:
        predict: runs the model on a batch (arrays, or a dict of arrays, stacked on axis 0)
            and returns NumPy outputs (an array, or a list / dict of arrays) of that batch.
        max_batch: the most examples one call takes (a bigger single request still runs alone).
        wait_ms: how long the oldest request may wait for others to join its batch.
    """

    def __init__(self, predict: Callable[[Any], Any], *, max_batch: int = 256,
                 wait_ms: float = 2.0) -> None:  # fmt: skip
        self.predict = predict
        self.max_batch = max(1, int(max_batch))
        self.wait = max(0.0, float(wait_ms)) / 1000.0
        self.stats = {"requests": 0, "predictions": 0, "model_calls": 0, "largest_batch": 0}
        self._queue: deque[_Pending] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="kerakit-serve")
        self._expect = 1  # the examples of the last batch: enough to go without waiting

    def start(self) -> None:
        """Start gathering (in the running event loop)."""
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Finish the batch running now, refuse what waits, and stop the worker thread."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(ShuttingDown("the server is shutting down; try again"))
        self._executor.shutdown(wait=True)

    async def submit(self, x: Any, n: int) -> tuple[Any, int]:
        """(the outputs of these `n` examples, the size of the batch they ran in)."""
        if self._task is None or self._task.done():
            raise ShuttingDown("the server is not running requests; try again")
        item = _Pending(x, n, asyncio.get_running_loop().create_future())
        self._queue.append(item)
        self._wake.set()
        return await item.future

    async def _loop(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = await self._gather()
            await self._run(batch)

    async def _gather(self) -> list[_Pending]:
        """The oldest request and those behind it that fit, waiting up to `wait` for more."""
        deadline = self._queue[0].since + self.wait
        enough = min(self.max_batch, self._expect)
        while self._rows_queued() < enough and (left := deadline - time.perf_counter()) > 0:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except asyncio.TimeoutError:
                break
        batch = [self._queue.popleft()]
        rows = batch[0].n
        while self._queue and rows + self._queue[0].n <= self.max_batch:
            rows += self._queue[0].n
            batch.append(self._queue.popleft())
        self._expect = rows
        return batch

    def _rows_queued(self) -> int:
        return sum(item.n for item in self._queue)

    async def _run(self, batch: list[_Pending]) -> None:
        batch = [item for item in batch if not item.future.done()]  # a client gone: skip it
        if not batch:
            return
        rows = sum(item.n for item in batch)
        x = batch[0].x if len(batch) == 1 else _concat([item.x for item in batch])
        loop = asyncio.get_running_loop()
        try:
            outputs = await loop.run_in_executor(self._executor, self.predict, x)
        except (Exception, asyncio.CancelledError) as exc:  # every request of the batch hears it
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(
                        ShuttingDown("the server is shutting down; try again")
                        if isinstance(exc, asyncio.CancelledError)
                        else exc
                    )
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        s = self.stats
        s["requests"] += len(batch)
        s["predictions"] += rows
        s["model_calls"] += 1
        s["largest_batch"] = max(s["largest_batch"], rows)
        start = 0
        for item in batch:
            if not item.future.done():
                item.future.set_result((_rows(outputs, start, start + item.n), rows))
            start += item.n


def _concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], Mapping):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts)


def _rows(outputs: Any, start: int, stop: int) -> Any:
    """Rows `start:stop` of every output."""
    if isinstance(outputs, Mapping):
        return {k: v[start:stop] for k, v in outputs.items()}
    if isinstance(outputs, (list, tuple)):
        return [v[start:stop] for v in outputs]
    return outputs[start:stop]
