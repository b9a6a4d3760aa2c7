"""Folders of images, one sub-folder per class (`directory:PATH`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from kerakit.data.splits import carve, class_info
from kerakit.errors import Where, data_error

IMAGE_EXTS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")  # what keras' image loader reads
CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}


def load_directory(root: Path, spec: dict, seed, where: Where) -> tuple:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise data_error(
            where, "source", f"{root} has no sub-folders; put one folder of images per class"
        )
    files, labels = [], []
    for i, name in enumerate(classes):
        found = sorted(
            p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file()
        )
        if not found:
            raise data_error(
                where,
                "source",
                f"class folder {root / name} holds no images ({', '.join(IMAGE_EXTS)}); "
                "add images or remove the folder",
            )
        files += found
        labels += [i] * len(found)
    files, labels, size = _check_images(files, labels, spec, where)
    if spec["image_size"] is None:  # null keeps the native size: that of the first image
        spec["image_size"] = size
    if spec["rescale"] == "auto":
        spec["rescale"] = 1 / 255  # decoded images are uint8
    paths = np.array([str(p) for p in files])
    train, val, test = carve((paths, np.array(labels)), None, None, spec, seed, where)
    channels = CHANNELS[spec["color_mode"]]

    def decode(path, label):
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=channels, expand_animations=False
        )
        image.set_shape([None, None, channels])
        return image, tf.cast(label, tf.int32)

    def make(part):
        if part is None:
            return None
        ds = tf.data.Dataset.from_tensor_slices(part).map(
            decode, num_parallel_calls=tf.data.AUTOTUNE
        )
        return ds.ignore_errors() if spec["skip_corrupt"] else ds

    dss = {"train": make(train), "val": make(val), "test": make(test)}
    sizes = {s: 0 if p is None else len(p[0]) for s, p in zip(dss, (train, val, test))}
    return dss, sizes, class_info(classes)


def _check_images(files: list, labels: list, spec: dict, where: Where) -> tuple:
    """Opens every image once (PIL.verify) so a corrupt file is named, not a TF stack trace."""
    import warnings

    from PIL import Image

    good, good_labels, size = [], [], None
    for path, label in zip(files, labels):
        try:
            with Image.open(path) as im:
                im.verify()
                size = size or [im.size[1], im.size[0]]
        except Exception as e:
            if not spec["skip_corrupt"]:
                raise data_error(
                    where,
                    "source",
                    f"cannot read image {path}: {e}; fix or remove it, or set "
                    "`skip_corrupt: true` to leave unreadable images out",
                ) from None
            warnings.warn(f"kerakit: skipping unreadable image {path}: {e}", stacklevel=3)
            continue
        good.append(path)
        good_labels.append(label)
    if not good:
        raise data_error(where, "source", "no readable images were found")
    return good, good_labels, size
