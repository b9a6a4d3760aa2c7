"""tensorflow-datasets (`tfds:NAME`): prepared data sets, or a download when there is network."""

from __future__ import annotations

import tensorflow as tf

from kerakit._net import reachable
from kerakit.data.splits import carve_dataset, class_info, count_examples
from kerakit.errors import Where, data_error, did_you_mean
from kerakit.recipe.data import data_path

NETWORK_PROBE = ("storage.googleapis.com", 443)  # where tfds downloads most data sets from


def load_tfds(name: str, spec: dict, base_dir, where: Where) -> tuple:
    import tensorflow_datasets as tfds

    data_dir = str(data_path(spec["data_dir"], base_dir)) if spec["data_dir"] else None
    shown = data_dir or "the default data_dir (~/tensorflow_datasets)"
    try:
        builder = tfds.builder(name, data_dir=data_dir, try_gcs=False)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        guess = ""
        if isinstance(e, tfds.core.registered.DatasetNotFoundError):
            guess = did_you_mean(name.split("/")[0].split(":")[0], tfds.list_builders())
        raise data_error(
            where, "source", f"tensorflow-datasets cannot open {name!r}: {first}{guess}"
        ) from None
    todo = (
        f"prepare it on a machine with network (`tfds build {name} --data_dir DIR`, "
        f"or one run with `download: true`), then set `data_dir: DIR` and `download: false`"
    )
    download = False
    if not builder.is_prepared() and spec["download"]:
        if not reachable(*NETWORK_PROBE):
            raise data_error(
                where,
                "source",
                f"tfds:{name} is not prepared under {shown} and there is no network to "
                f"download it; {todo}",
            )
        download = True
    supervised = spec["image_key"] is None
    keys = (spec["image_key"], spec["label_key"])
    if supervised:
        keys = builder.info.supervised_keys
        if not (
            isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)
        ):
            raise data_error(
                where,
                "image_key",
                f"tfds:{name} has no (input, label) supervised keys; set image_key and "
                f"label_key (features: {', '.join(builder.info.features.keys())})",
            )

    def load(split: str, key: str, download: bool):
        try:
            return tfds.load(
                name,
                split=split,
                data_dir=data_dir,
                download=download,
                try_gcs=False,
                shuffle_files=False,
                as_supervised=supervised,
                with_info=True,
            )
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if not download and not builder.is_prepared():
                msg = f"tfds:{name} is not prepared under {shown} ({first}); {todo}"
            else:
                msg = f"tfds:{name} split {split!r} could not be loaded: {first}"
            raise data_error(where, "split" if key else "source", msg) from None

    train, info = load(spec["split"]["train"], "", download)
    names = {}
    for part, default in (("val", "validation"), ("test", "test")):
        value = spec["split"][part]
        names[part] = (default if default in info.splits else None) if value == "auto" else value
    dss = {"train": train}
    for part, split in names.items():
        dss[part] = None if split is None else load(split, part, False)[0]
    if not supervised:
        dss = {
            k: None if d is None else d.map(lambda ex: (ex[keys[0]], ex[keys[1]]))
            for k, d in dss.items()
        }
    dss = {k: None if d is None else d.map(_cast_label) for k, d in dss.items()}
    dss = carve_dataset(dss, spec, where)
    if spec["rescale"] == "auto":
        spec["rescale"] = 1 / 255 if dss["train"].element_spec[0].dtype == tf.uint8 else None
    feature = info.features[keys[1]] if keys[1] in info.features else None
    if isinstance(feature, tfds.features.ClassLabel):
        info_out = class_info(list(feature.names))
    elif dss["train"].element_spec[1].dtype == tf.float32:
        info_out = {"class_names": None, "num_classes": None, "task": "regression"}
    else:
        info_out = {"class_names": None, "num_classes": None, "task": None}
    sizes = {k: 0 if d is None else count_examples(d) for k, d in dss.items()}
    return dss, sizes, info_out


def _cast_label(x, y):
    return x, tf.cast(y, tf.int32 if y.dtype.is_integer or y.dtype == tf.bool else tf.float32)
