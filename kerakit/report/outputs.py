"""A model's outputs as files, for `kerakit predict` of an image-to-image model: one PNG
per output in a folder, or every output in one `.npy` (NumPy and matplotlib only).

    kerakit predict runs/denoise/20261205-1621 noisy.npy --output cleaned/     # PNG files
    kerakit predict runs/denoise/20261205-1621 noisy.npy --output cleaned.npy  # one array
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kerakit._files import atomic_write
from kerakit.errors import DataError
from kerakit.report.figures import displayable
from kerakit.report.kinds import input_kind


def write_outputs(
    outputs: np.ndarray, labels: Sequence[str], output: str | os.PathLike | None, *, print_fn=print
) -> list[dict]:
    """Keep the outputs of an image-to-image model: PNG files in the folder `output`, or a
    `.npy` file; with no `output`, one line per input (shape and range), not its values.

    Args:
        outputs: the model's outputs, one per input.
        labels: one name per input (`img01.png`, `noisy.npy[3]`): the files are named
            after them (`img01.png`, `noisy-3.png`).
        output: a folder, a `.npy` path, or None.
        print_fn: called with each line to show.

    Returns:
        One row per input: `{"input", "shape"}`, and `"file"` when a PNG was written.
    """
    outputs = np.asarray(outputs)
    rows = [{"input": label, "shape": list(o.shape)} for label, o in zip(labels, outputs)]
    if output is None:
        for row, o in zip(rows, outputs):
            print_fn(f"{row['input']}: an output of shape {o.shape}, values {o.min():.4g} to {o.max():.4g}")  # fmt: skip
        print_fn("to keep them: --output FOLDER (PNG files) or --output FILE.npy")
        return rows
    path = Path(output)
    if path.suffix.lower() == ".npy":
        save_npy(path, outputs, print_fn=print_fn)
        return rows
    images = input_kind(outputs.shape[1:], outputs.dtype) == "image"
    if (path.suffix and not path.is_dir()) or not images:
        what = "a folder (PNG files) or a .npy file" if images else "a .npy file"
        raise DataError(
            f"--output {path}: this model's outputs are arrays of shape "
            f"{tuple(outputs.shape[1:])}; give {what}"
        )
    for row, file in zip(rows, save_images(outputs, path, file_names(labels))):
        row["file"] = str(file)
    print_fn(f"wrote {len(rows)} image{'s' * (len(rows) != 1)} to {path}{os.sep}")
    return rows


def save_images(x: np.ndarray, folder: str | os.PathLike, names: Sequence[str]) -> list[Path]:
    """Write each image of a batch as `folder/NAME.png` (atomically), scaled as the
    pictures scale them (`figures.displayable`): 8-bit grayscale or RGB."""
    from matplotlib.image import imsave

    images, cmap = displayable(np.asarray(x))
    folder = Path(folder)
    paths = []
    for image, name in zip(images, names):
        path = folder / f"{name}.png"
        with atomic_write(path, "wb") as f:
            imsave(f, image, cmap=cmap, vmin=0, vmax=1, format="png")
        paths.append(path)
    return paths


def save_npy(path: str | os.PathLike, outputs: np.ndarray, *, print_fn=print) -> Path:
    """Write the outputs as one `.npy` (atomically)."""
    path = Path(path)
    with atomic_write(path, "wb") as f:
        np.save(f, np.asarray(outputs))
    print_fn(f"wrote {path}: the outputs, shape {np.shape(outputs)}")
    return path


def file_names(labels: Sequence[str]) -> list[str]:
    """A file name per input: `img01` for img01.png, `noisy-3` for noisy.npy[3]; unique."""
    names: list[str] = []
    for label in labels:
        row = re.fullmatch(r"(.*)\[(\d+)\]", Path(label).name)
        name = f"{Path(row[1]).stem}-{row[2]}" if row else Path(label).stem
        name = re.sub(r"[^\w.-]+", "_", name) or "output"
        names.append(name if name not in names else f"{name}-{len(names)}")
    return names
