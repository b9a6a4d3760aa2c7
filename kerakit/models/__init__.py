"""Models: Keras names in, plain `keras.Model`s out.

`builders` makes Sequential and Functional models from plain values, `transfer`
joins a backbone (`backbones`) and a head and sets the fine-tuning stages,
`compile` compiles by preset and Keras names, `names` is the one Keras-name
lookup with argument checking, and `layers` holds kerakit's own registered layers.

    model = kk.build_model({"sequential": [{"Dense": {"units": 10, "activation": "softmax"}}]},
                           input_shape=(784,))
    kk.compile_model(model, preset="multiclass")
"""

from kerakit.models.backbones import WeightsError, build_backbone
from kerakit.models.builders import (
    build_functional,
    build_model,
    build_sequential,
    get_layer_class,
    make_layer,
)
from kerakit.models.compile import (
    PRESETS,
    apply_compile,
    compile_model,
    get_loss,
    get_metric,
    get_optimizer,
    infer_preset,
    resolve_compile,
)
from kerakit.models.layers import BackbonePreprocess
from kerakit.models.transfer import (
    build_transfer,
    cache_features,
    format_stage_report,
    set_stage,
    split_for_feature_cache,
    stage_report,
    transfer_model,
)

__all__ = [
    "PRESETS", "BackbonePreprocess", "WeightsError", "apply_compile", "build_backbone",
    "build_functional", "build_model", "build_sequential", "build_transfer", "cache_features",
    "compile_model", "format_stage_report", "get_layer_class", "get_loss", "get_metric",
    "get_optimizer", "infer_preset", "make_layer", "resolve_compile", "set_stage",
    "split_for_feature_cache", "stage_report", "transfer_model",
]  # fmt: skip
