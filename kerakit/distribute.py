"""tf.distribute strategies from a recipe's `train.distribute`.

The same recipe runs on one device, on every local GPU, on several machines
or on a TPU; only `train.distribute` changes:

```yaml
train:
  distribute: mirrored        # none | mirrored | multi_worker | tpu
  # tpu: grpc://10.0.0.2:8470 # with distribute: tpu
```

`data.batch_size` is the batch of ONE replica: the pipeline is batched with
`global_batch_size(batch_size, strategy)` = batch_size x replicas, so adding
devices keeps each device's work the same (TensorFlow's own convention).

In Python:

    strategy = make_strategy({"distribute": "mirrored"})
    print(describe_strategy(strategy))     # MirroredStrategy with 2 replicas: /cpu:0, /cpu:1
    with strategy.scope():
        model = kk.build_model(recipe); kk.compile_model(model, preset="multiclass")
    ds = shard_options(make_pipeline(..., batch_size=global_batch_size(32, strategy)), strategy)
    folder = worker_dir("runs/x/1", strategy)  # the chief writes the run folder, others a temp copy

With `multi_worker`, create the strategy before TensorFlow runs anything else
(TensorFlow configures its collective ops once, at start-up).
"""

from __future__ import annotations

import functools
import glob
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kerakit.errors import NOWHERE, KerakitError, RecipeError, Where

STRATEGIES = {
    "none": "one device (TensorFlow's default strategy)",
    "mirrored": "every local GPU, else every logical CPU device (MirroredStrategy)",
    "multi_worker": "several machines from TF_CONFIG (MultiWorkerMirroredStrategy)",
    "tpu": "a Cloud TPU or a TPU VM, with `tpu: NAME_OR_ADDRESS` (TPUStrategy)",
}
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


# --------------------------------------------------------------------------- strategies


def make_strategy(train: Mapping, *, where: Where = NOWHERE):
    """The `tf.distribute.Strategy` that a recipe's `train.distribute` names.

    - `none`: TensorFlow's default strategy (one device).
    - `mirrored`: `MirroredStrategy` over every local GPU; with no GPU, over
      every logical CPU device (one, unless split with
      `tf.config.set_logical_device_configuration`).
    - `multi_worker`: `MultiWorkerMirroredStrategy` from the `TF_CONFIG`
      environment variable, checked first (see `read_tf_config`). Make it
      before TensorFlow runs anything else.
    - `tpu`: `TPUStrategy` on `train.tpu` (a Cloud TPU name, `grpc://IP:PORT`,
      `local`, or '' for `TPU_NAME` / the TPU of this TPU VM). With no TPU
      reachable this fails in seconds, never hangs.

    Args:
        train: the recipe's `train` section (only `distribute` and `tpu` are read).
        where: position of the `train` section, for error messages.

    Returns:
        A `tf.distribute.Strategy`; build and compile the model in its `scope()`.

    Example:
        >>> strategy = make_strategy({"distribute": "none"})
        >>> strategy.num_replicas_in_sync
        1
    """
    import tensorflow as tf

    kind = train.get("distribute", "none")
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        # MirroredStrategy() alone takes CPU:0 only; logical CPU devices are replicas too.
        return tf.distribute.MirroredStrategy(
            [d.name for d in tf.config.list_logical_devices("CPU")]
        )
    if kind == "multi_worker":
        read_tf_config(where=where)
        try:
            return _multi_worker_class()()
        except RuntimeError as exc:
            if "startup" not in str(exc):
                raise
            raise where.at("distribute").error(
                "multi_worker must be set up before TensorFlow runs anything else "
                "(TensorFlow configures its collective ops once, at start-up); create the "
                "strategy first, before loading data or building models"
            ) from None
    if kind == "tpu":
        return _tpu_strategy(train.get("tpu", ""), where.at("tpu"))
    raise where.at("distribute").error(
        f"unknown distribute strategy {kind!r}; use one of {', '.join(STRATEGIES)}"
    )


@functools.cache  # one class, so isinstance checks agree
def _multi_worker_class():
    import tensorflow as tf

    class MultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        """TensorFlow's class, with `reduce` fixed for what Keras 3's `fit` asks of it.

        Keras 3.15 calls `reduce("MEAN", (x, y), axis=None)` on a whole batch
        and `reduce("MEAN", scalar, axis=0)` on each metric; TensorFlow's
        multi-worker `reduce` rejects both (keras#20585, tensorflow#72388).
        Reducing each tensor of the structure, over replicas only for
        scalars, is what `reduce` documents.
        """

        def reduce(self, reduce_op, value, axis=None):
            parent = super()

            def one(v):
                local = v
                if isinstance(v, tf.distribute.DistributedValues):
                    local = self.experimental_local_results(v)[0]
                rank = getattr(getattr(local, "shape", None), "rank", None)
                return parent.reduce(reduce_op, v, None if rank == 0 else axis)

            return tf.nest.map_structure(one, value)

    return MultiWorkerMirroredStrategy


# --------------------------------------------------------------------------- TF_CONFIG


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


def _tpu_strategy(address: str, where: Where):
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
        if not _reachable(host, port):
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
        if not _reachable(mhost, mport):
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


def _reachable(host: str, port: int) -> bool:
    """True when a TCP connection to host:port opens within TPU_CONNECT_TIMEOUT_S."""
    try:
        with socket.create_connection((host, port), timeout=TPU_CONNECT_TIMEOUT_S):
            return True
    except OSError:  # refused, unreachable, timed out, unknown host
        return False


# --------------------------------------------------------------------------- describing


def describe_strategy(strategy: Any, *, where: Where = NOWHERE) -> str:
    """One line saying how training is distributed, for `kerakit check` and logs.

    Args:
        strategy: a `tf.distribute.Strategy`, or a recipe's `train` section.
            With a section, `multi_worker` and `tpu` are described from
            `TF_CONFIG` and `train.tpu` without starting a server or
            contacting the TPU (what `kerakit check` wants); `none` and
            `mirrored` are made and described.
        where: position of the `train` section, for error messages.

    Example:
        >>> describe_strategy({"distribute": "none"})
        'no distribution (default strategy): 1 replica on /cpu:0'
    """
    if isinstance(strategy, Mapping):
        kind = strategy.get("distribute", "none")
        if kind == "multi_worker":
            config = read_tf_config(where=where)
            workers = sum(len(v) for k, v in config["cluster"].items() if k in ("chief", "worker"))
            task = config["task"]
            role = (
                "the chief"
                if _chief_of(config["cluster"], task["type"], task["index"])
                else "not the chief"
            )
            return (f"MultiWorkerMirroredStrategy from TF_CONFIG: {workers} worker(s) x the local "
                    f"devices of each; this is {task['type']} {task['index']} ({role})")  # fmt: skip
        if kind == "tpu":
            return f"TPUStrategy on TPU {strategy.get('tpu') or '(TPU_NAME or this TPU VM)'!r} (not contacted by check)"
        strategy = make_strategy(strategy, where=where)
    name = _strategy_name(strategy)
    devices = ", ".join(_short_device(d) for d in _devices(strategy))
    n = strategy.num_replicas_in_sync
    replicas = f"{n} replica{'s' if n != 1 else ''}"
    if name == "default":
        return f"no distribution (default strategy): {replicas} on {devices}"
    if name == "MultiWorkerMirroredStrategy":
        resolver = strategy.cluster_resolver
        spec = resolver.cluster_spec().as_dict()
        workers = sum(len(v) for k, v in spec.items() if k in ("chief", "worker")) or 1
        role = "the chief" if is_chief(strategy) else "not the chief"
        return (f"{name} with {replicas} on {workers} worker(s); this is "
                f"{resolver.task_type} {resolver.task_id} ({role}), local devices: {devices}")  # fmt: skip
    return f"{name} with {replicas}: {devices}"


def _strategy_name(strategy) -> str:
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "TPUStrategy"
    if type(strategy).__name__ in (
        "_DefaultDistributionStrategy",
        "_DefaultDistributionStrategyV1",
    ):
        return "default"
    return type(strategy).__name__


def _devices(strategy) -> list[str]:
    import tensorflow as tf

    if _strategy_name(strategy) == "default":
        gpus = tf.config.list_logical_devices("GPU")
        return [gpus[0].name if gpus else "/cpu:0"]
    try:
        return list(strategy.extended.worker_devices)
    except (AttributeError, RuntimeError, NotImplementedError):
        return []


def _short_device(name: str) -> str:
    import tensorflow as tf

    spec = tf.DeviceSpec.from_string(name)
    if spec.device_type is None:
        return name
    return f"/{spec.device_type.lower()}:{spec.device_index or 0}"


# --------------------------------------------------------------------------- chief, folders, data


def _chief_of(cluster: Mapping, task_type: str | None, task_id: int | None) -> bool:
    if task_type is None or not cluster:
        return True
    if "chief" in cluster:
        return task_type == "chief"
    return task_type == "worker" and (task_id or 0) == 0


def _task(strategy) -> tuple[str | None, int | None, dict]:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or _strategy_name(strategy) != "MultiWorkerMirroredStrategy":
        return None, None, {}
    return resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()


def is_chief(strategy: Any = None) -> bool:
    """True when this process writes the run folder: the chief of a multi-worker cluster.

    The `chief` task when the cluster has one, else worker 0. Always true for
    single-process strategies (`none`, `mirrored`, `tpu`).

    Example:
        >>> is_chief(make_strategy({"distribute": "none"}))
        True
    """
    task_type, task_id, cluster = _task(strategy)
    return _chief_of(cluster, task_type, task_id)


def worker_dir(
    path: str | os.PathLike, strategy: Any = None, *, copy: Iterable[str] = ("backup",)
) -> Path:
    """The folder this worker writes `path`'s files to: `path` itself on the chief.

    Every worker of a multi-worker run must make the same calls (saving a
    model or a backup may take part in collective operations), but only the
    chief's files are kept: as TensorFlow's multi-worker guide requires, the
    others write to a temporary folder, removed by `remove_worker_dir`. So
    that a resumed run restores the same backup on every worker, the
    sub-folders named in `copy` (the chief's `backup/`) are copied into it.

    Args:
        path: the run folder (the chief's).
        strategy: the strategy in use (None: a single process, the chief).
        copy: sub-folders of `path` to copy into a non-chief's temporary folder.

    Returns:
        `Path(path)` on the chief; `TMP/kerakit-worker-I-PID/NAME` elsewhere
        (the same folder on every call in this process).

    Example:
        >>> worker_dir("runs/x/1", make_strategy({"distribute": "none"}))
        PosixPath('runs/x/1')
    """
    path = Path(path)
    if is_chief(strategy):
        return path
    task_type, task_id, _ = _task(strategy)
    temp = Path(tempfile.gettempdir()) / f"kerakit-{task_type}-{task_id}-{os.getpid()}" / path.name
    temp.mkdir(parents=True, exist_ok=True)
    for name in copy:
        source, target = path / name, temp / name
        if source.is_dir() and not target.exists():
            shutil.copytree(source, target)
    return temp


def remove_worker_dir(path: str | os.PathLike, strategy: Any = None) -> None:
    """Delete a non-chief worker's temporary folder (from `worker_dir`); nothing on the chief."""
    if is_chief(strategy):
        return
    folder = Path(path).parent
    if folder.name.startswith("kerakit-") and Path(tempfile.gettempdir()) in folder.parents:
        shutil.rmtree(folder, ignore_errors=True)


def global_batch_size(per_replica: int, strategy: Any = None) -> int:
    """The batch the pipeline must make: `data.batch_size` (per replica) x replicas.

    Keras splits each batch of a distributed dataset across the replicas, so
    batching by `batch_size x num_replicas_in_sync` gives every replica
    `batch_size` examples, whatever the number of devices.

    Example:
        >>> global_batch_size(32, make_strategy({"distribute": "none"}))
        32
    """
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    return int(per_replica) * int(replicas)


def max_steps_per_execution(strategy: Any = None) -> int | None:
    """The most `steps_per_execution` that `fit` survives under `strategy`; None: no limit.

    Keras 3.15's multi-step training loop fails under a `tf.distribute`
    strategy with more than one replica ("You must feed a value for
    placeholder tensor", keras#19246), so compile with `steps_per_execution=1`
    there.

    Example:
        >>> max_steps_per_execution(make_strategy({"distribute": "none"})) is None
        True
    """
    if strategy is None or strategy.num_replicas_in_sync <= 1:
        return None  # one replica: measured fine with 32 (MirroredStrategy on one device too)
    return 1


def shard_options(ds, strategy: Any = None, policy: str = "DATA"):
    """`ds` with the `tf.data` auto-shard policy for distributed training set.

    kerakit's pipelines mostly read decoded, in-memory elements, where
    TensorFlow's default (`AUTO`: shard by files, else warn and fall back)
    has no files to split; `DATA` gives each worker its share of every
    global batch, which is right for any source. Harmless on one worker.

    Args:
        ds: a batched `tf.data.Dataset` (batched by `global_batch_size`).
        strategy: the strategy in use (kept for symmetry; every strategy
            that shards across workers honours the option).
        policy: an `AutoShardPolicy` name: "DATA", "FILE", "AUTO" or "OFF".

    Example:
        >>> ds = shard_options(tf.data.Dataset.range(8).batch(4), strategy)  # doctest: +SKIP
    """
    import tensorflow as tf

    choices = {p.name: p for p in tf.data.experimental.AutoShardPolicy}
    if policy not in choices:
        raise ValueError(f"policy must be one of {sorted(choices)}, got {policy!r}")
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = choices[policy]
    return ds.with_options(options)
