"""`kerakit serve` as a real process on a free loopback port, spoken to over real HTTP:
the answers of `kerakit predict`, concurrent requests batched, bad requests answered 4xx
while it keeps serving, image uploads, a clean stop on SIGTERM."""

from __future__ import annotations

import io
import json
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import CONFIGS, REPO

pytestmark = pytest.mark.slow  # a training run and server processes: ~30 s in all

MAX_BODY = 100_000


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    import kerakit as kk

    out = tmp_path_factory.mktemp("runs")
    run = kk.train(CONFIGS / "digits_cnn.yaml", epochs=1, verbose=0,
                   overrides=[f"output.dir={out}", "train.callbacks=minimal"])  # fmt: skip
    return run.path


class Server:
    """`kerakit serve RUN --port 0 ...` as a subprocess; `url` once it prints its line."""

    def __init__(self, run, *flags: str, tmp) -> None:
        self.stderr = open(tmp / f"serve-{time.monotonic_ns()}.err", "w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kerakit.cli", "serve", str(run), "--port", "0", *flags],
            cwd=REPO, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
        )  # fmt: skip
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        try:
            line = self.lines.get(timeout=90)
        except queue.Empty:
            self.close()
            raise AssertionError(f"no 'serving' line within 90 s; stderr: {self.log()}") from None
        assert line.startswith(f"serving {run} on http://127.0.0.1:"), (line, self.log())
        self.url = line.split(" on ")[1].strip()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)

    def log(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-3000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.stderr.close()


def call(url: str, path: str, body=None, content_type="application/json", method=None):
    """(status, headers, JSON answer) of one request."""
    data = json.dumps(body).encode() if body is not None and not isinstance(body, bytes) else body
    headers = {"Content-Type": content_type} if data is not None else {}
    req = urllib.request.Request(url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, json.loads(exc.read())


def multipart(files: dict[str, bytes], field: bool = False) -> tuple[bytes, str]:
    """A multipart/form-data body of files (or, `field`, of plain form fields)."""
    boundary = "kerakit-test-boundary"
    out = io.BytesIO()
    for name, content in files.items():
        filename = "" if field else f'; filename="{name}"'
        out.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}'
                  '\r\nContent-Type: application/octet-stream\r\n\r\n'.encode())  # fmt: skip
        out.write(content + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def server(run_folder, tmp_path_factory):
    # a long batch wait: concurrent requests surely share model calls
    srv = Server(run_folder, "--max-body", str(MAX_BODY), "--max-batch", "64",
                 "--batch-wait-ms", "30", tmp=tmp_path_factory.mktemp("serve"))  # fmt: skip
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    return load_digits()


def _expected(run_folder, files, tmp_path):
    from kerakit.inference import predict_files

    return predict_files(run_folder, [str(f) for f in files], top=3, print_fn=lambda *_: None)


def _same(rows, expected):
    assert len(rows) == len(expected)
    for got, want in zip(rows, expected):
        assert [t["class"] for t in got["top"]] == [t["class"] for t in want["top"]]
        np.testing.assert_allclose([t["probability"] for t in got["top"]],
                                   [t["probability"] for t in want["top"]], atol=1e-4)  # fmt: skip


def test_health_and_metadata(server, run_folder):
    status, _, answer = call(server.url, "/health")
    assert (status, answer) == (200, {"status": "ok"})
    status, _, meta = call(server.url, "/metadata")
    assert status == 200
    assert meta["run_folder"] == str(run_folder) and meta["task"] == "multiclass"
    assert meta["inputs"] == [{"name": meta["inputs"][0]["name"], "shape": [8, 8, 1],
                               "dtype": "float32", "size": None}]  # fmt: skip
    assert meta["outputs"][0]["shape"] == [10]
    assert meta["classes"] == [str(i) for i in range(10)]
    assert set(meta["versions"]) >= {"kerakit", "tensorflow", "keras"}
    assert meta["compiled_call"] is True
    assert meta["serving"]["max_batch"] == 64 and meta["serving"]["max_body"] == MAX_BODY


def test_json_answers_are_what_kerakit_predict_prints(server, run_folder, digits, tmp_path):
    x = digits.images[:6, :, :, None]  # raw 0..16 pixels, as a .npy for kerakit predict
    np.save(tmp_path / "x.npy", x)
    expected = _expected(run_folder, [tmp_path / "x.npy"], tmp_path)
    status, _, answer = call(server.url, "/predict", {"inputs": x.tolist()})
    assert status == 200, answer
    assert [r["input"] for r in answer["predictions"]] == list(range(6))
    _same(answer["predictions"], expected)
    # one example, without its batch axis
    status, _, one = call(server.url, "/predict", {"inputs": x[0].tolist()})
    assert status == 200 and len(one["predictions"]) == 1
    _same(one["predictions"], expected[:1])
    status, _, five = call(server.url, "/predict?top=5", {"inputs": x[:1].tolist()})
    assert status == 200 and len(five["predictions"][0]["top"]) == 5


def test_image_files_as_multipart(server, run_folder, digits, tmp_path):
    from PIL import Image

    files = {}
    for i in range(3):  # 0..16 pixels -> 0..255 PNGs; the run maps them back to 0..16
        path = tmp_path / f"digit{i}.png"
        Image.fromarray((digits.images[i] * 255 / 16).astype("uint8")).save(path)
        files[path.name] = path.read_bytes()
    expected = _expected(run_folder, [tmp_path / n for n in files], tmp_path)
    body, ctype = multipart(files)
    status, _, answer = call(server.url, "/predict", body, ctype)
    assert status == 200, answer
    assert [r["input"] for r in answer["predictions"]] == list(files)
    _same(answer["predictions"], expected)
    body, ctype = multipart({"broken.png": b"not an image"})
    status, _, answer = call(server.url, "/predict", body, ctype)
    assert status == 400 and answer["error"].startswith("broken.png: not a readable image")


def test_concurrent_requests_are_all_right_and_batched(server, run_folder, digits, tmp_path):
    x = digits.images[:16, :, :, None]
    np.save(tmp_path / "x.npy", x)
    expected = _expected(run_folder, [tmp_path / "x.npy"], tmp_path)
    before = call(server.url, "/metadata")[2]["serving"]

    def one(i):
        return call(server.url, "/predict", {"inputs": x[i : i + 1].tolist()})

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, range(16)))
    assert [a[0] for a in answers] == [200] * 16
    _same([a[2]["predictions"][0] for a in answers], expected)
    after = call(server.url, "/metadata")[2]["serving"]
    calls = after["model_calls"] - before["model_calls"]
    assert after["requests"] - before["requests"] == 16
    assert calls < 16, "concurrent requests should share model calls"
    assert max(int(a[1]["X-Kerakit-Batch"]) for a in answers) > 1


BAD = [  # (what, path, body, content type, method, status, words in the error)
    ("wrong shape", "/predict", {"inputs": np.zeros((2, 5, 5, 1)).tolist()}, None, None, 400,
     "examples of shape (5, 5, 1) do not fit the model, which takes (8, 8, 1)"),
    ("not JSON", "/predict", b"{inputs: [1, 2", None, None, 400, "the body is not JSON"),
    ("oversized body", "/predict", b"[" + b"0.0, " * (MAX_BODY // 5) + b"0]", None, None, 413,
     f"this server takes at most {MAX_BODY:,} bytes"),
    ("too big a batch", "/predict", {"inputs": np.zeros((65, 8, 8, 1)).tolist()}, None, None,
     400, "the request holds 65 examples; this server takes at most 64"),
    ("strings", "/predict", {"inputs": [["a"] * 8] * 8}, None, None, 400,
     "this input takes numbers (float32); got strings"),
    ("ragged", "/predict", {"inputs": [[1, 2], [3]]}, None, None, 400, "the lists are ragged"),
    ("no inputs key", "/predict", {"input": []}, None, None, 400, "did you mean 'inputs'?"),
    ("NaN", "/predict", b'{"inputs": [NaN]}', None, None, 400, "NaN is not a JSON number"),
    ("empty", "/predict", b"", None, None, 400, "the body is empty"),
    ("no examples", "/predict", {"inputs": np.zeros((0, 8, 8, 1)).tolist()}, None, None, 400,
     "examples of shape"),
    ("nested too deeply", "/predict", b"[" * 50_000, None, None, 400, "nested too deeply"),
    ("a file named ..", "/predict", *multipart({"..": b"1"}), None, 400,
     "input-0: cannot predict on a suffix-less file"),
    ("unknown path", "/predictions", {"inputs": []}, None, None, 404, "no such path /predictions"),
    ("wrong method", "/predict", None, None, "GET", 405, "GET /predict is not allowed; use POST"),
    ("a field, not a file", "/predict", *multipart({"x": b"1"}, field=True), None, 400,
     "multipart field 'x' is not a file"),
    ("no suffix", "/predict", *multipart({"x": b"1"}), None, 400,
     "x: cannot predict on a suffix-less file"),
]  # fmt: skip


@pytest.mark.parametrize("what,path,body,ctype,method,status,words", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_4xx_and_a_message_and_the_server_keeps_serving(
    server, what, path, body, ctype, method, status, words
):
    got, _, answer = call(server.url, path, body, ctype or "application/json", method)
    assert got == status, answer
    assert set(answer) == {"error"} and words in answer["error"], answer
    assert "Traceback" not in answer["error"]
    assert call(server.url, "/health")[0] == 200


def test_sigterm_finishes_the_request_in_flight_then_exits_0(run_folder, digits, tmp_path):
    srv = Server(run_folder, "--batch-wait-ms", "1500", tmp=tmp_path)
    try:
        with ThreadPoolExecutor(1) as pool:  # waits 1.5 s in the batcher for company
            pending = pool.submit(call, srv.url, "/predict", {"inputs": digits.images[:1, :, :, None].tolist()})  # fmt: skip
            time.sleep(0.5)
            srv.proc.send_signal(signal.SIGTERM)
            status, _, answer = pending.result(timeout=30)
        assert status == 200 and len(answer["predictions"]) == 1
        assert srv.proc.wait(timeout=15) == 0
        assert "Traceback" not in srv.log()
        with pytest.raises(urllib.error.URLError):
            call(srv.url, "/health")
    finally:
        srv.close()
