"""A layer written for tests/test_smoke.py: it works, but it cannot be saved.

`Unsaveable` keeps a NumPy random generator and puts it in its config; a generator is not
JSON, so `model.save` fails. Importing this module registers the layer with Keras
(`kerakit_smoke_test>Unsaveable`), which is how a recipe names a layer of its own.
"""

import keras
import numpy as np


@keras.saving.register_keras_serializable(package="kerakit_smoke_test")
class Unsaveable(keras.layers.Layer):
    """Scales its inputs by a factor drawn once from a generator it keeps."""

    def __init__(self, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.rng = np.random.default_rng(seed)
        self.scale = float(self.rng.uniform(0.5, 1.5))

    def call(self, x):
        return x * self.scale

    def get_config(self):
        return {**super().get_config(), "rng": self.rng}  # not serializable: the bug under test
