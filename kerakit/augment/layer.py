"""`AugmentLayer`: an augmentation inside the model, active only while training."""

from __future__ import annotations

from collections.abc import Mapping

import keras
import tensorflow as tf

from kerakit.augment.warp import augment_batch


@keras.saving.register_keras_serializable(package="kerakit")
class AugmentLayer(keras.layers.Layer):
    """Runs a resolved augmentation spec while training; the identity at inference."""

    def __init__(self, spec: Mapping, **kwargs):
        super().__init__(**kwargs)
        self.spec = dict(spec)
        self.seed_generator = keras.random.SeedGenerator(self.spec.get("seed"))

    def call(self, inputs, training=None):
        if not training:
            return tf.cast(inputs, self.compute_dtype)
        seed = tf.cast(self.seed_generator.next(), tf.int64)
        return tf.cast(augment_batch(self.spec, inputs, None, seed)[0], self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "spec": self.spec}


def strip_augmentation(model: keras.Model) -> keras.Model:
    """A copy of `model` with every `AugmentLayer` replaced by `Identity` (weights shared).

    Export this: it needs no kerakit to load, and behaves the same at inference.
    """

    def clone(layer):
        if isinstance(layer, AugmentLayer):
            return keras.layers.Identity(name=layer.name)
        return layer

    return keras.models.clone_model(model, clone_function=clone)
