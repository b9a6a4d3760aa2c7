"""The one atomic writer, and the small file helpers every stage shares (no TensorFlow).

Every file kerakit writes goes to a temporary name beside its target, is
fsynced, then `os.replace`d over it: a crash, a kill or a full disk part-way
through a write leaves the previous good file where it was, never a truncated
stub (Keras's own `model.save` opens the target with "wb").

    with atomic_path("runs/x/model.keras") as tmp:
        model.save(tmp)
    write_json("runs/x/metrics.json", {"accuracy": 0.98})
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is)."""
    with contextlib.suppress(OSError):  # some filesystems refuse fsync on a folder
        _fsync_path(Path(path))


def _temp_beside(path: Path, tag: str = "tmp") -> Path:
    # Same folder (so os.replace is a rename), hidden, and ending with the target's
    # full name so that Keras's suffix checks (.keras, .weights.h5) still pass.
    return path.parent / f".{tag}-{os.getpid()}-{secrets.token_hex(4)}-{path.name}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it over `path`.

    Whatever the block writes to the yielded path (a file, or a folder) only
    replaces `path` once the block has finished without error; on error the
    temporary is removed and `path` keeps its previous content.

    Args:
        path: the final file or folder.

    Example:
        >>> with atomic_path("runs/x/model.keras") as tmp:  # doctest: +SKIP
        ...     model.save(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    try:
        yield tmp
        if tmp.is_dir():
            for root, _dirs, files in os.walk(tmp):
                for name in files:
                    _fsync_path(Path(root) / name)
                fsync_dir(root)
            old = None
            if path.exists():
                # A folder cannot be renamed over a non-empty one: move the old one
                # aside first; it is deleted only once the new one is in place.
                old = _temp_beside(path, "old")
                os.replace(path, old)
            os.replace(tmp, path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        else:
            _fsync_path(tmp)
            os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8"
) -> Iterator[TextIO | BinaryIO]:
    """Open a temporary file beside `path` for writing; rename it over `path` on success.

    Args:
        path: the final file.
        mode: "w" (text, the default) or "wb".
        encoding: text encoding (ignored in binary mode).

    Example:
        >>> with atomic_write("runs/x/metrics.json") as f:  # doctest: +SKIP
        ...     json.dump(metrics, f)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically; returns the path."""
    with atomic_write(path) as f:
        f.write(text)
    return Path(path)


def json_default(value: Any) -> Any:
    """JSON for what `json.dumps` does not know: NumPy scalars and arrays, else `str`."""
    item = getattr(value, "item", None)  # NumPy scalars (and 0-d arrays)
    if getattr(value, "ndim", None) == 0 and callable(item):
        return item()
    if callable(getattr(value, "tolist", None)):  # NumPy arrays
        return value.tolist()
    return str(value)


def write_json(path: str | os.PathLike, value: Any, *, sort_keys: bool = False) -> Path:
    """Write `value` as indented JSON to `path` atomically; returns the path.

    NaN and infinities become null: JSON has no such numbers (Python's `json`
    would write `NaN`, which other readers refuse).
    """
    text = json.dumps(json_safe(value), indent=2, sort_keys=sort_keys, default=json_default)
    return write_text(path, text + "\n")


def json_safe(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (lists and dicts walked)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def read_json(path: str | os.PathLike) -> dict:
    """A JSON file's content, or {} when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
