"""Folders of images, one sub-folder per class (`directory:PATH`)."""

from __future__ import annotations

from collections import Counter
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
    files, labels, sizes = _check_images(files, labels, spec, where)
    if spec["image_size"] is None:  # null keeps the native size, when every image has it
        spec["image_size"] = common_size(sizes, where)
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
    """Decodes every image once, with TensorFlow as training will, so an unreadable file is
    named now (not a stack trace mid-training); returns the readable ones and their sizes."""
    import warnings

    channels = CHANNELS[spec["color_mode"]]
    good, good_labels, sizes = [], [], Counter()
    for path, label in zip(files, labels):
        try:
            image = tf.io.decode_image(
                tf.io.read_file(str(path)), channels=channels, expand_animations=False
            )
            sizes[(int(image.shape[0]), int(image.shape[1]))] += 1
        except (tf.errors.OpError, ValueError) as e:
            why = " ".join(str(getattr(e, "message", e)).split())[:200]
            if not spec["skip_corrupt"]:
                raise data_error(
                    where,
                    "source",
                    f"cannot read image {path}: {why}; fix or remove it, or set "
                    "`skip_corrupt: true` to leave unreadable images out",
                ) from None
            warnings.warn(f"kerakit: skipping unreadable image {path}: {why}", stacklevel=3)
            continue
        good.append(path)
        good_labels.append(label)
    if not good:
        raise data_error(where, "source", "no readable images were found")
    return good, good_labels, sizes


def common_size(sizes: Counter, where: Where) -> list[int]:
    """The images' one size; images of several sizes need `image_size` (never the first one's)."""
    if len(sizes) == 1:
        (h, w), _ = sizes.most_common(1)[0]
        return [h, w]
    found = ", ".join(f"{h}x{w} ({n} images)" for (h, w), n in sizes.most_common(4))
    (h, w), _ = sizes.most_common(1)[0]
    raise data_error(
        where,
        "image_size",
        f"the images differ in size ({len(sizes)} sizes: {found}"
        f"{', ...' if len(sizes) > 4 else ''}); set `image_size: [H, W]` to resize them all, "
        f"for example [{h}, {w}] (the most common)",
    )
