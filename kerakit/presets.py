"""Compile presets as data (no TensorFlow): what each fills in, in Keras names.

A preset fills `optimizer`, `loss` and `metrics`; anything the recipe (or the
caller) gives overrides it. `activation`/`units` say which output layer the
preset expects, which is how a preset is inferred when none is given.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    "multiclass": {
        "description": "one of N classes, integer labels; softmax output of N units",
        "optimizer": "adam",
        "loss": "sparse_categorical_crossentropy",
        "metrics": ["accuracy"],
        "label_mode": "int",
        "activation": "softmax",
    },
    "multiclass_onehot": {
        "description": "one of N classes, one-hot labels; softmax output of N units",
        "optimizer": "adam",
        "loss": "categorical_crossentropy",
        "metrics": ["accuracy"],
        "label_mode": "onehot",
        "activation": "softmax",
    },
    "binary": {
        "description": "yes/no, labels 0/1; one sigmoid unit",
        "optimizer": "adam",
        "loss": "binary_crossentropy",
        "metrics": ["accuracy", "precision", "recall", "auc"],
        "label_mode": "int",
        "activation": "sigmoid",
    },
    "multilabel": {
        "description": "any of N labels, multi-hot labels; N sigmoid units",
        "optimizer": "adam",
        "loss": "binary_crossentropy",
        "metrics": ["binary_accuracy", {"AUC": {"multi_label": True, "name": "auc"}}],
        "label_mode": "multihot",
        "activation": "sigmoid",
    },
    "regression": {
        "description": "real-valued targets; linear output",
        "optimizer": "adam",
        "loss": "mse",
        "metrics": ["mae"],
        "label_mode": "float",
        "activation": "linear",
    },
}


def infer_preset_name(activation: str | None, units: int | None) -> tuple[str, str]:
    """The preset that fits an output layer, and why (for the user to read)."""
    act = (activation or "linear").lower()
    if act == "softmax":
        return "multiclass", f"the output layer is softmax with {units} units"
    if act == "sigmoid":
        if units == 1:
            return "binary", "the output layer is one sigmoid unit"
        return "multilabel", f"the output layer is sigmoid with {units} units"
    return "regression", f"the output layer's activation is {act!r}"


def by_output(value) -> bool:
    """Whether a `loss`/`metrics` value is a mapping by output name.

    ``{digit: sparse_categorical_crossentropy, parity: binary_crossentropy}`` is by
    output; ``{SparseCategoricalCrossentropy: {from_logits: true}}`` (one name with
    its arguments) is a single loss.
    """
    from collections.abc import Mapping

    if not isinstance(value, Mapping):
        return False
    return len(value) != 1 or isinstance(next(iter(value.values())), (list, str))
