"""The `train:` section: epochs, callbacks, distribution, precision (no TensorFlow)."""

from __future__ import annotations

import copy
from typing import Any

from kerakit.errors import Where
from kerakit.recipe import schema as S
from kerakit.recipe.callbacks import resolve_callbacks

TRAIN_KEYS = [
    "epochs", "callbacks", "distribute", "precision", "tpu", "verbose", "class_weight", "tracking",
]  # fmt: skip
DISTRIBUTE = ["none", "mirrored", "multi_worker", "tpu"]
PRECISION = ["auto", "float32", "mixed_bfloat16", "mixed_float16"]
# train.tracking: each tracker's options (kerakit.training.tracking feeds them from a run).
TRACKERS = {"tensorboard": [], "mlflow": ["tracking_uri", "experiment"]}


def resolve_train(section: Any, where: Where) -> dict:
    S.check_mapping(section, where)
    S.check_keys(section, TRAIN_KEYS, where, section="train")
    out: dict = {}
    out["epochs"] = S.check_number(
        section.get("epochs", 10), where.at("epochs"), integer=True, minimum=1
    )
    out["callbacks"] = resolve_callbacks(
        section.get("callbacks", "standard"), where.at("callbacks")
    )
    out["distribute"] = S.check_choice(
        section.get("distribute", "none"), DISTRIBUTE, where.at("distribute"), "distribute strategy"
    )
    if out["distribute"] == "tpu":
        tpu = section.get("tpu", "")
        if not isinstance(tpu, str):
            raise where.at("tpu").error(
                "`tpu:` is the TPU's name or address, a string ('' for the local TPU)"
            )
        out["tpu"] = tpu
    elif "tpu" in section:
        raise where.at("tpu").error("`tpu:` is only used with `distribute: tpu`")
    out["precision"] = S.check_choice(
        section.get("precision", "auto"), PRECISION, where.at("precision"), "precision"
    )
    out["verbose"] = S.check_auto_or_number(
        section.get("verbose", "auto"), where.at("verbose"), "'auto', 0, 1 or 2",
        integer=True, minimum=0, maximum=2,
    )  # fmt: skip
    if section.get("class_weight") is not None:
        cw = section["class_weight"]
        if cw != "balanced":
            S.check_mapping(
                cw, where.at("class_weight"), "'balanced' or a mapping of class index to weight"
            )
            by_index = {}
            for k, v in cw.items():
                # YAML mapping keys are read as text (`0: 1.0` gives "0"): digits are indices
                index = int(k) if isinstance(k, str) and k.isdigit() else k
                if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                    raise where.at("class_weight", k).error(
                        f"class_weight keys are class indices (0, 1, ...), got {S.show(k)}"
                    )
                by_index[index] = S.check_number(v, where.at("class_weight", k), minimum=0)
            cw = by_index
        out["class_weight"] = copy.deepcopy(cw)
    if section.get("tracking") is not None:  # recorded only when set: older recipes unchanged
        out["tracking"] = resolve_tracking(section["tracking"], where.at("tracking"))
    return out


def resolve_tracking(value: Any, where: Where) -> dict:
    """`train.tracking` as {tracker: {option: value}}, from a name, a list of names (or of
    one-key mappings) or a mapping: `mlflow`, `[tensorboard, mlflow]`,
    `{mlflow: {tracking_uri: http://host:5000, experiment: digits}}`."""
    items: list = value if isinstance(value, list) else [value]
    if isinstance(value, dict):
        items = [{k: v} for k, v in value.items()]
    out: dict = {}
    for i, item in enumerate(items):
        at = where.at(i) if isinstance(value, list) else where
        if isinstance(item, dict) and len(item) == 1:
            ((name, options),) = item.items()
        elif isinstance(item, str):
            name, options = item, {}
        else:
            raise at.error(f"expected a tracker name ({', '.join(TRACKERS)}) or "
                           f"{{name: {{options}}}}, got {S.show(item)}")  # fmt: skip
        S.check_choice(name, TRACKERS, at, "tracker")
        options = {} if options is None else S.check_mapping(options, at.at(name))
        S.check_keys(options, TRACKERS[name], at.at(name), section=f"tracking.{name}")
        for key, option in options.items():
            S.check_str(option, at.at(name, key))
        out[name] = dict(options)
    return out
