"""Saving and loading models: every format, atomically; loading only after an allowlist check.

`save` writes `.keras` (first: a legacy `.h5` save rewrites the compile config
in Keras 3.15), `.h5` and SavedModel; `load` reads any of them or a run folder;
`safety` is the allowlist check of a file's config before Keras parses it, `savedmodel`
the allowlist of a SavedModel's ops, `bounds` what a file may unpack to.
The atomic writer itself is `kerakit._files` (every stage writes through it);
its names are re-exported here, where kerakit 0.1.0 had them.

    paths = kk.save_model(model, "runs/digits/1", formats=["keras", "h5", "savedmodel"])
    same = kk.load_model("runs/digits/1")
"""

from kerakit._compat import cache_keras_skipsets
from kerakit._files import atomic_path, atomic_write, fsync_dir, write_json, write_text
from kerakit.saving.load import load_model
from kerakit.saving.save import FORMATS, save_model

__all__ = [
    "FORMATS", "atomic_path", "atomic_write", "cache_keras_skipsets", "fsync_dir", "load_model",
    "save_model", "write_json", "write_text",
]  # fmt: skip
