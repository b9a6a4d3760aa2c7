"""Loading bounds: what a model file may unpack to, checked before Keras unpacks anything.

A `.keras` archive may not unpack to more than `MAX_RATIO` times what it stores (per
member and in all) nor to more than `MAX_UNPACKED_BYTES`; the datasets of an `.h5` (or
of a `.keras` archive's `model.weights.h5`) obey the same numbers against the file's
size. The bounds hold with `trusted=True` too: they guard memory and disk, not code.
"""

from __future__ import annotations

import io
import struct
import zipfile
from typing import Any

from kerakit.errors import ModelFileError
from kerakit.saving.refusals import refuse

# Keras writes every member of a .keras archive *stored* (uncompressed, 1:1): its
# model.weights.h5 is as large as the weights, and real weights barely compress anyway
# (a re-zipped one keeps ~90% of its size). DEFLATE reaches ~1030:1 on zeros, so a 1.5 MB
# archive of six zero-filled 250 MiB members is a decompression bomb. Keras 3.15's own
# guard uses the same 100:1 but only per member and above 256 MiB (4 GiB in memory): the
# six members slipped under it and wrote 1.5 GB to the temp folder.
MAX_RATIO = 100  # unpacked : stored, for each member and for the whole file
# Below this a member (or a whole file) is too small to matter, whatever its ratio: a
# config.json of a few MiB compresses ~20:1 and stays well under 100:1 anyway.
RATIO_FLOOR = 4 * 1024 * 1024
# The most one model file may unpack to in all: to the temp folder (Keras extracts every
# member of an archive that has assets) and into memory (it reads model.weights.h5 whole,
# then every dataset). 16 GiB is four billion float32 weights, ~30 times VGG16 with its top
# (138M weights, 553 MB), the largest model kerakit builds. Raise it for a genuine giant.
MAX_UNPACKED_BYTES = 16 * 1024**3
MAX_H5_OBJECTS = 100_000  # links walked in an .h5 (ResNet50's weights: ~1,000)


def _too_big(path: Any, why: str, limit: str) -> ModelFileError:
    return ModelFileError(
        f"{path}: refused to load: {why}. Keras would unpack that to the temp folder or into "
        "memory while loading, and a model file Keras wrote unpacks to about its own size, so "
        f"this is likely a decompression bomb. If the file is genuine, raise "
        f"kerakit.saving.bounds.{limit}."
    )


def _size(n: int) -> str:
    return f"{n:,} bytes ({n / 2**20:,.1f} MiB)"


def _check_total(total: int, file_bytes: int, path: Any, what: str) -> None:
    """The one rule for a whole file: at most MAX_UNPACKED_BYTES, at most MAX_RATIO times its size."""
    if total > MAX_UNPACKED_BYTES:
        raise _too_big(
            path, f"{what} {_size(total)} in all (at most {_size(MAX_UNPACKED_BYTES)})",
            "MAX_UNPACKED_BYTES",
        )  # fmt: skip
    if total > RATIO_FLOOR and total > MAX_RATIO * max(file_bytes, 1):
        raise _too_big(
            path,
            f"{what} {_size(total)} in all, {total / max(file_bytes, 1):,.0f} times the "
            f"{_size(file_bytes)} file (at most {MAX_RATIO}:1)",
            "MAX_RATIO",
        )


def check_zip_bounds(infos: list, file_bytes: int, path: Any, what: str) -> None:
    """Refuse zip members (and a zip) that unpack to far more than they store."""
    total = 0
    for info in infos:
        total += info.file_size
        stored = max(info.compress_size, 1)
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * stored:
            raise _too_big(
                path,
                f"{what}'s member {info.filename!r} unpacks to {_size(info.file_size)} from "
                f"{_size(info.compress_size)}, {info.file_size / stored:,.0f}:1 (at most "
                f"{MAX_RATIO}:1 above {_size(RATIO_FLOOR)})",
                "MAX_RATIO",
            )
    _check_total(total, file_bytes, path, f"{what}'s {len(infos)} members unpack to")


class _Slice(io.RawIOBase):
    """Bytes [start, start + size) of an open file, read-only: a stored zip member, read
    where it lies (h5py reads model.weights.h5 through it) instead of being unpacked."""

    def __init__(self, raw: Any, start: int, size: int):
        self._raw, self._start, self._size, self._pos = raw, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, self._size)[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        self._raw.seek(self._start + self._pos)
        got = self._raw.readinto(memoryview(buffer).cast("B")[:n]) or 0
        self._pos += got
        return got


def _open_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, raw: Any, path: Any) -> Any:
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1:
        # Not as Keras writes it (re-zipped): unpack it, as Keras is about to, within the
        # bounds already checked. (h5py seeking in a compressed stream re-inflates it.)
        import shutil
        import tempfile

        copy = tempfile.SpooledTemporaryFile(max_size=256 * 1024 * 1024)
        with archive.open(info) as member:
            shutil.copyfileobj(member, copy)
        copy.seek(0)
        return copy
    raw.seek(info.header_offset)
    header = raw.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise ModelFileError(f"{path}: the model file is corrupt ({info.filename} has no header)")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    return _Slice(raw, info.header_offset + 30 + name_len + extra_len, info.compress_size)


def check_weights_member(archive: zipfile.ZipFile, path: str, file_bytes: int) -> None:
    """Bound the datasets of the archive's model.weights.h5 (or .npz) without unpacking it."""
    names = set(archive.namelist())
    for name in ("model.weights.h5", "model.weights.npz"):
        if name not in names:
            continue
        info = archive.getinfo(name)
        with open(path, "rb") as raw, _open_member(archive, info, raw, path) as member:
            try:
                if name.endswith(".h5"):
                    import h5py

                    with h5py.File(member, "r") as h5:
                        check_h5_bounds(h5, path, file_bytes, name)
                else:
                    with zipfile.ZipFile(member) as npz:
                        check_zip_bounds(npz.infolist(), info.file_size, path, name)
            except ModelFileError:
                raise
            except Exception as e:  # h5py's, zipfile's and the OS's own errors
                raise ModelFileError(f"{path}: the model file is corrupt ({name}: {e})") from None


def check_h5_bounds(h5: Any, path: Any, file_bytes: int, what: str) -> None:
    """Refuse an HDF5 file whose datasets declare far more than it stores, or that reads
    other files (external links, external or virtual datasets)."""
    import h5py

    seen: set = set()
    found: list = []
    total = links = 0

    def visit(name: str, link: Any) -> Any:
        nonlocal total, links
        links += 1
        if links > MAX_H5_OBJECTS:
            found.append(
                _too_big(path, f"{what} holds over {MAX_H5_OBJECTS:,} objects", "MAX_H5_OBJECTS")
            )
            return True
        if isinstance(link, h5py.ExternalLink):
            found.append(refuse(path, f"{what} links {name!r} to another file ({link.filename!r})"))
            return True
        if not isinstance(link, h5py.HardLink):
            return None  # a soft link: Keras refuses to follow it
        obj = h5[name]
        if not isinstance(obj, h5py.Dataset) or obj.id in seen:
            return None
        seen.add(obj.id)
        if obj.external or obj.is_virtual:
            found.append(
                refuse(path, f"the dataset {name!r} of {what} keeps its data in other files")
            )
            return True
        if obj.shape is None:
            return None
        declared = obj.size * obj.dtype.itemsize
        stored = obj.id.get_storage_size()
        total += declared
        if declared > RATIO_FLOOR and declared > MAX_RATIO * max(stored, 1):
            found.append(
                _too_big(
                    path,
                    f"the dataset {name!r} of {what} declares {_size(declared)} "
                    f"({'x'.join(map(str, obj.shape))} {obj.dtype}) but stores "
                    f"{_size(stored)} (at most {MAX_RATIO}:1 above {_size(RATIO_FLOOR)})",
                    "MAX_RATIO",
                )
            )
            return True
        return None

    h5.visititems_links(visit)
    if found:
        raise found[0]
    _check_total(total, file_bytes, path, f"the datasets of {what} declare")
