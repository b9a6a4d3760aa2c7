"""The weights store: ImageNet weights fetched once, checked by SHA-256 ever after (no TensorFlow).

`kerakit weights fetch NAME` downloads a backbone's no-top ImageNet file once
(or takes it from Keras's own cache) into the store, and `kerakit weights add
NAME FILE` records a file copied from another machine; `manifest.json` keeps
each file's SHA-256, size, origin and time. A recipe's ``weights: imagenet`` is
then served from the store (`kerakit.models.backbones`), its hash checked on
every build, with no network: `kerakit check` and `kerakit train` work offline.

The store is ``$KERAKIT_WEIGHTS_DIR``, else ``~/.kerakit/weights/``; a file
lives in a folder named after its entry (``mobilenetv2@224/...``). The
manifest is replaced atomically under a lock, so two processes never corrupt
it nor lose each other's entries.

    entry = add_file(BACKBONES["vgg16"], "/media/usb/vgg16_notop.h5")
    lookup(BACKBONES["vgg16"], (160, 160, 3)).path   # the store's copy
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from kerakit._files import atomic_path, read_json, sha256_file, write_json
from kerakit._net import unreachable
from kerakit.errors import KerakitError, ModelFileError, did_you_mean
from kerakit.recipe.backbones import BACKBONES, Backbone

ENV = "KERAKIT_WEIGHTS_DIR"
MANIFEST = "manifest.json"
FORMAT = 1  # manifest.json's "kerakit_weights_store"
PROBE_TIMEOUT_S = 5.0  # a connect() to the weights host; no network must fail in seconds
DOWNLOAD_TIMEOUT_S = 60.0  # per socket operation of a download: a stall is an error
SUFFIXES = (".weights.h5", ".h5", ".hdf5")
KERAS_HOST = "https://storage.googleapis.com/"  # where keras.applications downloads from


class StoreError(ModelFileError):
    """A weights store entry is missing or corrupt, or a file cannot be fetched or added."""


@dataclass(frozen=True)
class Entry:
    """One file of the store, as `manifest.json` records it.

    Args:
        name: the backbone (``"mobilenetv2"``).
        size: the input size its file is for, when the backbone has one file per
            size (`Backbone.weights_sizes`); None when one file serves every size.
        file: the path inside the store (``"mobilenetv2@224/mobilenet_v2_..._224_no_top.h5"``).
        sha256: the hex SHA-256 of the file's bytes.
        bytes: the file's size in bytes.
        origin: the URL it came from, or the file it was added from.
        fetched_at: when it was recorded (UTC, ISO 8601).
    """

    name: str
    size: int | None
    file: str
    sha256: str
    bytes: int
    origin: str
    fetched_at: str

    @property
    def key(self) -> str:
        return entry_key(self.name, self.size)

    @property
    def path(self) -> Path:
        return store_dir() / self.file

    def check(self) -> tuple[str, str | None]:
        """``("ok" | "MISSING" | "CORRUPT", the file's SHA-256 or None)``: the file re-hashed."""
        if not self.path.is_file():
            return "MISSING", None
        actual = sha256_file(self.path)
        ok = actual == self.sha256 and self.path.stat().st_size == self.bytes
        return ("ok" if ok else "CORRUPT"), actual

    def problem(self, status: str, actual: str | None) -> str:
        """What is wrong with this entry, and what to do (``status`` from `check`)."""
        what = (
            "is missing"
            if status == "MISSING"
            else f"does not match the manifest: sha256 expected {self.sha256}, got {actual}"
        )
        return (
            f"the {self.label} ImageNet weights in the weights store, {self.path}, {what}; "
            f"run `kerakit weights fetch {self.name}{self.size_flag}` again (or `kerakit "
            f"weights add {self.name} FILE{self.size_flag}` with a good copy)"
        )

    @property
    def label(self) -> str:
        return self.name if self.size is None else f"{self.name} ({self.size}x{self.size})"

    @property
    def size_flag(self) -> str:
        return size_flag(self.size)


def store_dir() -> Path:
    """``$KERAKIT_WEIGHTS_DIR``, else ``~/.kerakit/weights``."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    return Path(os.path.expanduser("~")) / ".kerakit" / "weights"


def keras_cache_dirs() -> list[Path]:
    """Where ``keras.utils.get_file`` caches (it falls back to /tmp/.keras when home is read-only)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return [Path(home) / "models", Path("/tmp") / ".keras" / "models"]


def size_flag(size: int | None) -> str:
    """`` --size N`` for a file other than the default one, else ''."""
    return "" if size in (None, 224) else f" --size {size}"


def entry_key(name: str, size: int | None) -> str:
    return name if size is None else f"{name}@{size}"


def find_backbone(name: str) -> Backbone:
    """The registered backbone ``name``; an unknown name is an error with close matches."""
    if not isinstance(name, str) or name.lower() not in BACKBONES:
        raise KerakitError(
            f"unknown backbone {name!r}{did_you_mean(name, BACKBONES)}; "
            f"`kerakit list backbones` shows them all"
        )
    return BACKBONES[name.lower()]


def size_variant(backbone: Backbone, input_shape: Sequence[int] | None) -> int | None:
    """The size whose file serves ``input_shape`` (as `Backbone.imagenet_url` picks it), or
    None when the backbone has one file for every size."""
    if not backbone.weights_sizes:
        return None
    size = input_shape[0] if input_shape else None
    return size if size in backbone.weights_sizes else 224


def check_size(backbone: Backbone, size: int | None) -> int | None:
    """A ``--size`` given on the command line, checked: the variant it names."""
    if size is None:
        return size_variant(backbone, None)
    if not backbone.weights_sizes:
        raise KerakitError(
            f"{backbone.name} has one ImageNet file for every input size; leave out --size"
        )
    if size not in backbone.weights_sizes:
        raise KerakitError(
            f"{backbone.name} has ImageNet files for the sizes "
            f"{', '.join(map(str, backbone.weights_sizes))}, not {size} (an input of another "
            f"size uses the 224 file: leave out --size)"
        )
    return size


def entries() -> list[Entry]:
    """Every entry of the manifest, in the order they were first recorded."""
    raw = read_json(store_dir() / MANIFEST).get("entries", {})
    out = []
    for value in raw.values():
        with contextlib.suppress(TypeError):  # a hand-edited entry kerakit does not know
            out.append(Entry(**value))
    return out


def lookup(backbone: Backbone, input_shape: Sequence[int] | None) -> Entry | None:
    """The store's entry for ``backbone`` at ``input_shape``, or None (not checked: see
    `Entry.check`)."""
    key = entry_key(backbone.name, size_variant(backbone, input_shape))
    return next((e for e in entries() if e.key == key), None)


def add_file(
    backbone: Backbone, source: str | os.PathLike, *, size: int | None = None, origin: str = ""
) -> Entry:
    """Copies a weights file into the store and records it; returns its entry.

    Args:
        backbone: the backbone it belongs to.
        source: a ``.h5`` / ``.weights.h5`` file (Keras's own no-top file, or a
            ``save_weights`` of the backbone).
        size: the input size it is for (backbones with one file per size), else None.
        origin: where it came from (default: the source file's absolute path).
    """
    source = Path(source).expanduser()
    if not source.is_file():
        raise StoreError(f"weights file {str(source)!r} not found")
    if not source.name.endswith(SUFFIXES):
        raise StoreError(
            f"weights file {str(source)!r} is not a Keras weights file; expected a name "
            f"ending in {', '.join(SUFFIXES)}"
        )
    key = entry_key(backbone.name, size)
    target = store_dir() / key / source.name
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
    return _record(backbone, size, target, origin or str(source.resolve()))


def fetch(
    backbone: Backbone, size: int | None = None, print_fn: Callable[[str], None] = print
) -> Entry:
    """The store's entry for ``backbone``'s no-top ImageNet file: already there and intact,
    else taken from Keras's cache, else downloaded (probed first: offline fails in seconds).

    Args:
        backbone: a backbone whose table row names its file (`Backbone.weights_url`).
        size: the size variant (see `check_size`); None: the default file.
        print_fn: where to say what happened.
    """
    if size is None:
        size = size_variant(backbone, None)
    known = next((e for e in entries() if e.key == entry_key(backbone.name, size)), None)
    if known is not None and known.check()[0] == "ok":
        print_fn(f"{known.label}: already in the store, {known.path}")
        return known
    shape = (size, size, 3) if size else None
    url, fname = backbone.imagenet_url(shape), backbone.imagenet_file(shape)
    for folder in keras_cache_dirs():
        if (folder / fname).is_file():  # Keras downloaded it before: no network needed
            print_fn(f"{backbone.name}: taking {fname} from Keras's cache {folder}")
            return add_file(backbone, folder / fname, size=size, origin=url)
    probe(backbone, url, fname, size)
    target = store_dir() / entry_key(backbone.name, size) / fname
    print_fn(f"{backbone.name}: downloading {url}")
    try:
        with atomic_path(target) as tmp:
            _download(url, tmp)
    except OSError as e:  # urllib's errors are OSErrors, a stalled socket too
        raise StoreError(offline_message(backbone, url, fname, str(e), size)) from e
    return _record(backbone, size, target, url)


def probe(backbone: Backbone, url: str, fname: str, size: int | None = None) -> None:
    """Fails within seconds, saying what to do, when the host of ``url`` cannot be reached."""
    reason = unreachable(urlsplit(url or KERAS_HOST).hostname, 443, PROBE_TIMEOUT_S)
    if reason:
        raise StoreError(offline_message(backbone, url, fname, reason, size))


def offline_message(
    backbone: Backbone, url: str, fname: str, reason: str, size: int | None = None
) -> str:
    """Why the ImageNet file of ``backbone`` cannot be downloaded, and the way out."""
    where = url or f"the no-top ImageNet weights of keras.applications.{backbone.application}"
    fname = fname or f"{backbone.name}_notop.weights.h5"
    return (
        f"cannot download the ImageNet weights of {backbone.name} ({reason}). With no network "
        f"here, download {where} on a machine that has one (or run `kerakit weights fetch "
        f"{backbone.name}{size_flag(size)}` there and copy the file from its store), copy it "
        f"to this machine and record it: `kerakit weights add {backbone.name} "
        f"/path/to/{fname}{size_flag(size)}`; "
        f"`weights: imagenet` then works offline"
    )


def status() -> list[tuple[Entry, str, str | None]]:
    """Every entry re-hashed: ``(entry, "ok" | "MISSING" | "CORRUPT", actual sha256)``."""
    return [(e, *e.check()) for e in entries()]


def _download(url: str, target: Path) -> None:
    with (
        urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
        open(target, "wb") as f,
    ):
        shutil.copyfileobj(response, f, 1 << 20)


def _record(backbone: Backbone, size: int | None, path: Path, origin: str) -> Entry:
    entry = Entry(
        name=backbone.name,
        size=size,
        file=path.relative_to(store_dir()).as_posix(),
        sha256=sha256_file(path),
        bytes=path.stat().st_size,
        origin=origin,
        fetched_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    with _locked():  # read, change, replace: another process's entry is never lost
        manifest = read_json(store_dir() / MANIFEST)
        records = dict(manifest.get("entries", {}))
        old = records.get(entry.key, {}).get("file")
        records[entry.key] = asdict(entry)
        write_json(store_dir() / MANIFEST, {"kerakit_weights_store": FORMAT, "entries": records})
    if old and old != entry.file:  # the entry's previous file, replaced by another name
        with contextlib.suppress(OSError):
            (store_dir() / old).unlink()
    return entry


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    folder = store_dir()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: the atomic replace still keeps the manifest whole
        yield
        return
    with open(folder / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
