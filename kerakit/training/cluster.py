"""Clusters: TF_CONFIG for `multi_worker` (read, checked, or made from flags) and the TPU
connection for `tpu`, each failing in seconds with what to set when nothing answers."""

from __future__ import annotations

import glob
import json
import os
import threading
from pathlib import Path
from typing import Any

from kerakit._net import reachable
from kerakit.errors import NOWHERE, KerakitError, RecipeError, Where

# Seconds to wait for a TPU (or the Cloud metadata server) to answer a connection.
TPU_CONNECT_TIMEOUT_S = 3.0
# Seconds TPU initialization may take once the TPU answered (a real one needs ~30 s).
TPU_INIT_TIMEOUT_S = 180.0
_TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)
_SET_TF_CONFIG = (
    f"set it on every worker, e.g. {_TF_CONFIG_EXAMPLE} (index 1 on the second), "
    "or run `kerakit train RECIPE --workers host1:12345,host2:12345 --worker-index I`"
)


def read_tf_config(*, where: Where = NOWHERE) -> dict:
    """The `TF_CONFIG` environment variable, parsed and checked for `multi_worker`.

    Raises a `RecipeError` that says what to set when it is missing, is not
    JSON, or does not describe a cluster of `host:port` workers and this
    worker's place in it.

    Example:
        >>> os.environ["TF_CONFIG"] = json.dumps(tf_config_from_flags(0, ["localhost:12345"]))
        >>> read_tf_config()["task"]
        {'type': 'worker', 'index': 0}
    """
    at = where.at("distribute")
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        raise at.error(
            f"multi_worker needs the TF_CONFIG environment variable, which is not set; {_SET_TF_CONFIG}"
        )
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise at.error(
            f"TF_CONFIG is not valid JSON ({exc}); it was {raw[:200]!r}; {_SET_TF_CONFIG}"
        ) from None
    if (
        not isinstance(config, dict)
        or not isinstance(config.get("cluster"), dict)
        or not config["cluster"]
    ):
        raise at.error(
            f'TF_CONFIG needs a "cluster" mapping of job names to "host:port" lists; {_SET_TF_CONFIG}'
        )
    cluster = config["cluster"]
    if "ps" in cluster:
        raise at.error(
            'TF_CONFIG names "ps" (parameter server) tasks, which multi_worker '
            '(MultiWorkerMirroredStrategy) does not use; list only "worker" (and "chief") tasks'
        )
    for job, tasks in cluster.items():
        if job not in ("chief", "worker", "evaluator"):
            raise at.error(
                f'TF_CONFIG cluster job {job!r} is not one of "chief", "worker", "evaluator"'
            )
        if not isinstance(tasks, list) or not tasks:
            raise at.error(
                f'TF_CONFIG cluster.{job} must be a non-empty list of "host:port" strings, got {tasks!r}'
            )
        for address in tasks:
            _check_address(address, f"TF_CONFIG cluster.{job}", at)
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise at.error(
            f'TF_CONFIG needs "task": {{"type": "worker", "index": I}} saying which worker this is; got {task!r}'
        )
    if task["type"] not in cluster:
        raise at.error(
            f"TF_CONFIG task.type {task['type']!r} is not a job of the cluster ({', '.join(cluster)})"
        )
    index = task["index"]
    if (
        isinstance(index, bool)
        or not isinstance(index, int)
        or not 0 <= index < len(cluster[task["type"]])
    ):
        raise at.error(
            f"TF_CONFIG task.index {index!r} is out of range: cluster.{task['type']} has "
            f"{len(cluster[task['type']])} task(s), numbered from 0"
        )
    return config


def _check_address(address: Any, what: str, at: Where | None = None) -> tuple[str, int]:
    def fail(msg):
        raise at.error(msg) if at is not None else RecipeError(msg)

    if not isinstance(address, str) or ":" not in address:
        fail(f'{what}: {address!r} is not a "host:port" address')
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        fail(f'{what}: {address!r} is not a "host:port" address with a port from 1 to 65535')
    return host, int(port)


def tf_config_from_flags(worker_index: int, workers: list[str] | str) -> dict:
    """The `TF_CONFIG` of `kerakit train RECIPE --workers A,B --worker-index I`.

    Every worker gets the same list, in the same order, and its own index;
    worker 0 is the chief (it writes the run folder). Set the result with
    ``os.environ["TF_CONFIG"] = json.dumps(config)`` before the strategy is made.

    Args:
        worker_index: this worker's place in `workers`, from 0.
        workers: "host:port" of every worker, as a list or one comma-separated string.

    Example:
        >>> tf_config_from_flags(1, "10.0.0.1:2222,10.0.0.2:2222")["task"]
        {'type': 'worker', 'index': 1}
    """
    if isinstance(workers, str):
        workers = [w.strip() for w in workers.split(",") if w.strip()]
    workers = list(workers)
    if not workers:
        raise RecipeError(
            "--workers: give every worker's host:port, comma-separated, e.g. --workers host1:12345,host2:12345"
        )
    for w in workers:
        _check_address(w, "--workers")
    dupes = sorted({w for w in workers if workers.count(w) > 1})
    if dupes:
        raise RecipeError(
            f"--workers: {', '.join(dupes)} listed twice; each worker needs its own host:port"
        )
    if (
        isinstance(worker_index, bool)
        or not isinstance(worker_index, int)
        or not 0 <= worker_index < len(workers)
    ):
        raise RecipeError(
            f"--worker-index {worker_index!r} is out of range: --workers lists {len(workers)} "
            f"worker(s), numbered 0 to {len(workers) - 1} (0 is the chief)"
        )
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": worker_index}}


# --------------------------------------------------------------------------- TPU


def tpu_strategy(address: str, where: Where):
    """TPUStrategy on `address`, after checks that fail in seconds when no TPU is there."""
    import tensorflow as tf

    address = (address or "").strip()
    if not address:
        address = (
            os.environ.get("TPU_NAME") or os.environ.get("KUBE_GOOGLE_CLOUD_TPU_ENDPOINTS") or ""
        )
    if not address:
        if not _local_tpu_devices():
            _tpu_fail(where, "this machine has no TPU (no /dev/accel* or /dev/vfio device) and TPU_NAME is not set",
                      "run on a TPU VM, set `train.tpu` to the TPU's name or grpc://IP:8470, "
                      "or use distribute: none | mirrored")  # fmt: skip
        address = "local"
    elif address == "local":
        if not _local_tpu_devices():
            _tpu_fail(where, "tpu: local, but this machine has no TPU device (/dev/accel* or /dev/vfio)",
                      "run on a TPU VM, or give the TPU's name or grpc://IP:8470")  # fmt: skip
    elif address.startswith("grpc://") or _looks_like_address(address):
        host, port = _split_host_port(address.removeprefix("grpc://"), 8470)
        if not reachable(host, port, TPU_CONNECT_TIMEOUT_S):
            _tpu_fail(where, f"no TPU answers at {host}:{port} (waited {TPU_CONNECT_TIMEOUT_S:g} s)",
                      "check the address and the firewall, or that the TPU is running")  # fmt: skip
        address = f"grpc://{host}:{port}"
    else:  # a Cloud TPU name: resolved through the Google Cloud metadata server
        host = (
            os.environ.get("GCE_METADATA_IP")
            or os.environ.get("GCE_METADATA_HOST")
            or "169.254.169.254"
        )
        mhost, mport = _split_host_port(host, 80)
        if not reachable(mhost, mport, TPU_CONNECT_TIMEOUT_S):
            _tpu_fail(where, f"the TPU name {address!r} needs the Google Cloud metadata server, "
                      f"which does not answer here ({mhost}:{mport})",
                      "run on a Google Cloud VM in the TPU's project, or give grpc://IP:8470")  # fmt: skip

    def connect():
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=address)
        if address != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)

    # The checks above answer the usual cases in seconds; this bounds the rest
    # (a TPU that accepts connections but never initializes).
    result: dict = {}

    def target():
        try:
            result["strategy"] = connect()
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=target, name="kerakit-tpu-connect", daemon=True)
    thread.start()
    thread.join(TPU_INIT_TIMEOUT_S)
    if thread.is_alive():
        _tpu_fail(where, f"the TPU at {address!r} did not initialize within {TPU_INIT_TIMEOUT_S:g} s",
                  "check that it is healthy and not used by another program")  # fmt: skip
    if "error" in result:
        exc = result["error"]
        _tpu_fail(where, f"cannot use the TPU {address!r}: {type(exc).__name__}: {str(exc).strip()[:300]}",
                  "check the TPU's name or address, and that it runs the same TensorFlow version")  # fmt: skip
    return result["strategy"]


def _tpu_fail(where: Where, what: str, todo: str):
    # A KerakitError, not a RecipeError: the recipe may be right and the TPU absent.
    raise KerakitError(str(where.error(f"no usable TPU: {what}; {todo}")))


def _local_tpu_devices() -> list[str]:
    return glob.glob("/dev/accel*") + [
        p for p in glob.glob("/dev/vfio/*") if Path(p).name.isdigit()
    ]


def _looks_like_address(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit()


def _split_host_port(text: str, default_port: int) -> tuple[str, int]:
    text = text.removeprefix("http://").rstrip("/")
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit():
        return host.strip("[]"), int(port)
    return text.strip("[]"), default_port
