"""The request batcher of `kerakit serve` on a stand-in model (no TensorFlow, milliseconds),
and the message when aiohttp is missing."""

from __future__ import annotations

import asyncio
import sys
import threading

import numpy as np
import pytest

from kerakit.errors import KerakitError
from kerakit.serve.batcher import Batcher


class Model:
    """Doubles its inputs; records each call's batch size and thread."""

    def __init__(self, outputs="array", fail=False):
        self.calls, self.threads, self.outputs, self.fail = [], set(), outputs, fail

    def __call__(self, x):
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("the model broke")
        x = x["a"] if isinstance(x, dict) else x
        self.calls.append(len(x))
        if self.outputs == "list":
            return [x * 2, x + 1]
        if self.outputs == "dict":
            return {"twice": x * 2, "plus": x + 1}
        return x * 2


def _run(model, requests, **kwargs):
    """Every request (an array of examples) submitted at once; their answers in order."""

    async def go():
        batcher = Batcher(model, **kwargs)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(x, len(x)) for x in requests)), batcher
        finally:
            await batcher.stop()

    return asyncio.run(go())


def test_concurrent_requests_share_one_call_and_get_their_own_rows_back():
    model = Model()
    requests = [np.full((1, 3), i, "float32") for i in range(10)]
    answers, batcher = _run(model, requests, max_batch=64, wait_ms=50)
    assert model.calls == [10] and batcher.stats["model_calls"] == 1
    for i, (out, batch) in enumerate(answers):
        np.testing.assert_array_equal(out, np.full((1, 3), 2 * i))
        assert batch == 10
    assert batcher.stats == {"requests": 10, "predictions": 10, "model_calls": 1,
                             "largest_batch": 10}  # fmt: skip
    assert model.threads == {"kerakit-serve_0"}  # one worker thread, not the event loop


@pytest.mark.parametrize("outputs", ["list", "dict"])
def test_several_outputs_are_split_per_request(outputs):
    model = Model(outputs)
    requests = [np.full((n, 2), n, "float32") for n in (1, 3, 2)]
    answers, _ = _run(model, requests, max_batch=64, wait_ms=50)
    for x, (out, _) in zip(requests, answers):
        parts = out if outputs == "list" else [out["twice"], out["plus"]]
        np.testing.assert_array_equal(parts[0], x * 2)
        np.testing.assert_array_equal(parts[1], x + 1)


def test_a_batch_never_passes_max_batch_and_requests_are_never_split():
    model = Model()
    requests = [np.zeros((n, 1), "float32") for n in (3, 3, 3, 5, 1)]
    answers, _ = _run(model, requests, max_batch=6, wait_ms=50)
    assert sum(model.calls) == 15 and max(model.calls) <= 6
    assert [len(out) for out, _ in answers] == [3, 3, 3, 5, 1]


def test_dict_inputs_are_stacked_by_name():
    model = Model()
    requests = [{"a": np.full((2, 1), i, "float32")} for i in range(3)]

    async def go():
        batcher = Batcher(model, max_batch=64, wait_ms=50)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(x, 2) for x in requests))
        finally:
            await batcher.stop()

    answers = asyncio.run(go())
    assert model.calls == [6]
    np.testing.assert_array_equal(answers[2][0], np.full((2, 1), 4))


def test_max_batch_1_runs_each_request_alone():
    model = Model()
    _run(model, [np.zeros((1, 1), "float32")] * 5, max_batch=1, wait_ms=50)
    assert model.calls == [1] * 5


def test_a_lone_request_waits_no_longer_than_wait_ms():
    async def go():
        batcher = Batcher(Model(), max_batch=64, wait_ms=30)
        batcher.start()
        loop = asyncio.get_running_loop()
        try:
            await batcher.submit(np.zeros((1, 1), "float32"), 1)  # the first: goes at once
            start = loop.time()
            await batcher.submit(np.zeros((1, 1), "float32"), 1)  # waits for company, then goes
            return loop.time() - start
        finally:
            await batcher.stop()

    assert asyncio.run(go()) < 1.0


def test_a_failing_model_fails_every_request_of_its_batch_and_the_batcher_goes_on():
    async def go():
        model = Model(fail=True)
        batcher = Batcher(model, max_batch=64, wait_ms=20)
        batcher.start()
        try:
            results = await asyncio.gather(
                *(batcher.submit(np.zeros((1, 1)), 1) for _ in range(3)), return_exceptions=True
            )
            model.fail = False
            after = await batcher.submit(np.ones((1, 1)), 1)
            return results, after
        finally:
            await batcher.stop()

    results, (after, _) = asyncio.run(go())
    assert [str(r) for r in results] == ["the model broke"] * 3
    np.testing.assert_array_equal(after, [[2.0]])


def test_a_missing_aiohttp_names_the_extra_to_install(monkeypatch, capsys):
    from kerakit.cli import main
    from kerakit.serve import require_aiohttp

    monkeypatch.setitem(sys.modules, "aiohttp", None)  # import aiohttp -> ImportError
    with pytest.raises(KerakitError, match=r'pip install "kerakit\[serve\]"'):
        require_aiohttp()
    assert main(["serve", "runs/none"]) == 2
    assert 'kerakit serve needs aiohttp, which is not installed: pip install "kerakit[serve]"' in (
        capsys.readouterr().err
    )
