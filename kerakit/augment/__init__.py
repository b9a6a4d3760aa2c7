"""Image augmentation: one fused warp per batch, in tf.data or inside the model.

`augmentation(...)` takes what a recipe's `augment:` section takes (a preset,
ops, ImageDataGenerator keywords; see `kerakit.recipe.augment`) and returns an
`Augmentation`, which runs it on batches (`facade`); `AugmentLayer` runs it
inside a model (`layer`); the batch function itself is `warp.augment_batch`.
docs/augment.md has the ranges and the ImageDataGenerator mapping.

    aug = kk.augmentation("medium", seed=1)
    train = aug.apply(train)                 # a batched tf.data dataset
"""

from kerakit.augment.facade import Augmentation, augmentation
from kerakit.augment.layer import AugmentLayer, strip_augmentation
from kerakit.augment.warp import augment_batch

__all__ = ["AugmentLayer", "Augmentation", "augment_batch", "augmentation", "strip_augmentation"]
