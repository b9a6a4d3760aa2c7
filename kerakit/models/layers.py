"""kerakit's own Keras layers, registered under `kerakit>Name` (their names never change:
saved models refer to them). `AugmentLayer` lives with the augmentation (`kerakit.augment`)."""

from __future__ import annotations

import keras

from kerakit.errors import NOWHERE
from kerakit.models.backbones import backbone_info, preprocess_fn


@keras.saving.register_keras_serializable(package="kerakit")
class BackbonePreprocess(keras.layers.Layer):
    """The backbone's own ``keras.applications.<module>.preprocess_input``, as a layer.

    It runs in float32 even under a mixed policy (mean subtraction on 0-255
    values loses digits in bfloat16), and it serializes by backbone name, so a
    saved model reloads with no custom code beyond ``import kerakit.transfer``.

    Args:
        backbone: a registered backbone name, e.g. ``"vgg16"``.
    """

    def __init__(self, backbone: str, **kwargs):
        kwargs["dtype"] = "float32"
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        self.backbone = backbone_info(backbone, NOWHERE).name
        self._fn = preprocess_fn(self.backbone)

    def call(self, inputs):
        return self._fn(keras.ops.cast(inputs, "float32"))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "backbone": self.backbone}
