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

import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kerakit._compat import max_steps_per_execution as max_steps_per_execution  # re-exported
from kerakit._compat import multi_worker_strategy_class
from kerakit.errors import NOWHERE, Where
from kerakit.training.cluster import read_tf_config, tpu_strategy

STRATEGIES = {
    "none": "one device (TensorFlow's default strategy)",
    "mirrored": "every local GPU, else every logical CPU device (MirroredStrategy)",
    "multi_worker": "several machines from TF_CONFIG (MultiWorkerMirroredStrategy)",
    "tpu": "a Cloud TPU or a TPU VM, with `tpu: NAME_OR_ADDRESS` (TPUStrategy)",
}


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
            return multi_worker_strategy_class()()
        except RuntimeError as exc:
            if "startup" not in str(exc):
                raise
            raise where.at("distribute").error(
                "multi_worker must be set up before TensorFlow runs anything else "
                "(TensorFlow configures its collective ops once, at start-up); create the "
                "strategy first, before loading data or building models"
            ) from None
    if kind == "tpu":
        return tpu_strategy(train.get("tpu", ""), where.at("tpu"))
    raise where.at("distribute").error(
        f"unknown distribute strategy {kind!r}; use one of {', '.join(STRATEGIES)}"
    )


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
