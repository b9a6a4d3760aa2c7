"""The backbone table: every `keras.applications` image model, as plain data (no TensorFlow).

One row per backbone: its constructor, the submodule whose ``preprocess_input``
belongs to it, its default and minimum input size, and where its blocks start
(for ``fine_tune: {unfreeze: {blocks: N}}``). `kerakit.models.backbones`
resolves a row through Keras itself. Adding a backbone is one `register_backbone`
call; registering a name twice is an error.
"""

from __future__ import annotations

from dataclasses import dataclass

from kerakit.recipe.registry import Registry


@dataclass(frozen=True)
class Backbone:
    """One backbone of `keras.applications`, described by Keras names only.

    Args:
        name: the recipe name, e.g. ``"vgg16"`` (the constructor's name in lower case).
        description: one line for ``kerakit list backbones``.
        application: the constructor's name in ``keras.applications`` (``"VGG16"``).
        module: the ``keras.applications`` submodule whose ``preprocess_input``
            belongs to this backbone (``"vgg16"``).
        block_pattern: a regular expression whose first group names the block a
            layer belongs to (``unfreeze: {blocks: N}`` unfreezes the top N blocks).
        weights_url: where Keras downloads the ImageNet weights without top
            (the file name is what Keras caches in ``~/.keras/models``);
            ``{size}`` stands for the input size; empty: Keras knows it.
        weights_sizes: input sizes that have their own weights file (others use 224).
        min_size: the smallest height/width the backbone accepts (Keras's own minimum).
        default_size: the size its ImageNet weights were trained at.
        block_ends: the pattern names the *last* layers of each block (the Inception
            models name only a block's output); a block starts after the previous one ends.
    """

    name: str
    description: str
    application: str
    module: str
    block_pattern: str
    weights_url: str = ""
    weights_sizes: tuple = ()
    min_size: int = 32
    default_size: int = 224
    block_ends: bool = False

    def imagenet_url(self, input_shape=(224, 224, 3)) -> str:
        size = input_shape[0] if input_shape and input_shape[0] in self.weights_sizes else 224
        return self.weights_url.format(size=size)

    def imagenet_file(self, input_shape=(224, 224, 3)) -> str:
        return self.imagenet_url(input_shape).rsplit("/", 1)[-1]


BACKBONES = Registry("backbones", "transfer-learning backbones: `model.transfer.backbone`")


def register_backbone(backbone: Backbone) -> Backbone:
    """Adds a backbone to the registry; registering a name twice is an error."""
    return BACKBONES.register(backbone.name, backbone)


def list_backbones() -> dict[str, str]:
    """Backbone name -> one-line description, for ``kerakit list backbones``."""
    return BACKBONES.describe()


_GCS = "https://storage.googleapis.com/tensorflow/keras-applications/"
# The four backbones of kerakit 0.1: names, descriptions and URLs unchanged.
register_backbone(Backbone(
    "vgg16", "VGG16 (138M params with top; 14.7M without): simple, strong features, slow",
    "VGG16", "vgg16", r"^(block\d+)_",
    _GCS + "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"))  # fmt: skip
register_backbone(Backbone(
    "resnet50", "ResNet50 (23.6M params without top): residual blocks with BatchNorm",
    "ResNet50", "resnet50", r"^(conv\d+_block\d+)_",
    _GCS + "resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"))  # fmt: skip
register_backbone(Backbone(
    "mobilenetv2", "MobileNetV2 (2.3M params without top): small and fast, for CPUs and phones",
    "MobileNetV2", "mobilenet_v2", r"^(block_\d+|expanded_conv)_",
    _GCS + "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
    weights_sizes=(96, 128, 160, 192, 224)))  # fmt: skip
register_backbone(Backbone(
    "efficientnetb0",
    "EfficientNetB0 (4.0M params without top): accurate for its size; rescales inside the model",
    "EfficientNetB0", "efficientnet", r"^(block\d+[a-z])_",
    "https://storage.googleapis.com/keras-applications/efficientnetb0_notop.h5"))  # fmt: skip

_RESNET = r"^(conv\d+_block\d+)_"
_EFFNET = r"^(block\d+[a-z])_"
_NASNET = r"^(?:normal|reduction|adjust|separable)\w*?_((?:stem_|reduce_)?\d+)$"
# application, preprocess module, block pattern, default size, min size
_TABLE = [
    ("Xception", "xception", r"^(block\d+)_", 299, 71),
    ("VGG19", "vgg19", r"^(block\d+)_", 224, 32),
    ("ResNet101", "resnet", _RESNET, 224, 32),
    ("ResNet152", "resnet", _RESNET, 224, 32),
    ("ResNet50V2", "resnet_v2", _RESNET, 224, 32),
    ("ResNet101V2", "resnet_v2", _RESNET, 224, 32),
    ("ResNet152V2", "resnet_v2", _RESNET, 224, 32),
    ("InceptionV3", "inception_v3", r"^(mixed\d+)$", 299, 75),
    (
        "InceptionResNetV2",
        "inception_resnet_v2",
        r"^(mixed_\d+[a-z]|block\d+_\d+)(?:_|$)",
        299,
        75,
    ),  # fmt: skip
    ("MobileNet", "mobilenet", r"^conv_(?:pad|dw|pw)_(\d+)", 224, 32),
    ("MobileNetV3Small", "mobilenet_v3", r"^(expanded_conv(?:_\d+)?)_", 224, 32),
    ("MobileNetV3Large", "mobilenet_v3", r"^(expanded_conv(?:_\d+)?)_", 224, 32),
    ("DenseNet121", "densenet", _RESNET, 224, 32),
    ("DenseNet169", "densenet", _RESNET, 224, 32),
    ("DenseNet201", "densenet", _RESNET, 224, 32),
    ("NASNetMobile", "nasnet", _NASNET, 224, 32),
    ("NASNetLarge", "nasnet", _NASNET, 331, 32),
    *[
        (f"EfficientNetB{i}", "efficientnet", _EFFNET, size, 32)
        for i, size in [(1, 240), (2, 260), (3, 300), (4, 380), (5, 456), (6, 528), (7, 600)]
    ],  # fmt: skip
    *[
        (f"EfficientNetV2{v}", "efficientnet_v2", _EFFNET, size, 32)
        for v, size in [
            ("B0", 224),
            ("B1", 240),
            ("B2", 260),
            ("B3", 300),
            ("S", 384),
            ("M", 480),
            ("L", 480),
        ]
    ],  # fmt: skip
    *[
        (f"ConvNeXt{v}", "convnext", r"^convnext_[a-z]+_(stage_\d+_block_\d+)_", 224, 32)
        for v in ["Tiny", "Small", "Base", "Large", "XLarge"]
    ],  # fmt: skip
]
_ENDS = {"InceptionV3", "InceptionResNetV2"}
for _app, _module, _pattern, _default, _min in _TABLE:
    register_backbone(Backbone(
        _app.lower(), f"{_app}: ImageNet at {_default}x{_default}, at least {_min}x{_min}",
        _app, _module, _pattern, min_size=_min, default_size=_default,
        block_ends=_app in _ENDS))  # fmt: skip
