"""`kerakit weights`: the weights store, so that `weights: imagenet` works offline.

    kerakit weights fetch mobilenetv2 [--size 160]   # once, on a machine with network
    kerakit weights add vgg16 /media/usb/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5
    kerakit weights list                             # name, file, size, sha256, ok/MISSING/CORRUPT
    kerakit weights verify                           # every file re-hashed; 2 if one is bad

The store and its manifest are `kerakit.recipe.weights_store`'s; a build with
``weights: imagenet`` reads them (`kerakit.models.backbones`).
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile

NAME = "weights"
HELP = "fetch, add, list and verify the ImageNet weights kept for offline use"
SIZE_HELP = "the input size, for a backbone with one file per size (mobilenetv2: 96 ... 224)"


def add(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = sub.add_parser(
        "fetch", help="download a backbone's no-top ImageNet file once into the store"
    )
    fetch.add_argument("name", help="a backbone (`kerakit list backbones`)")
    fetch.add_argument("--size", type=int, help=SIZE_HELP)
    added = sub.add_parser("add", help="record a weights file copied from another machine")
    added.add_argument("name", help="a backbone (`kerakit list backbones`)")
    added.add_argument("file", help="its no-top ImageNet .h5 / .weights.h5 file")
    added.add_argument("--size", type=int, help=SIZE_HELP)
    sub.add_parser("list", help="the files of the store, with their status")
    sub.add_parser("verify", help="re-hash every file of the store; exit 2 naming a bad one")


def run(args: argparse.Namespace) -> int:
    from kerakit.recipe import weights_store as store

    if args.action in ("list", "verify"):
        return _report(store, table=args.action == "list")
    backbone = store.find_backbone(args.name)
    size = store.check_size(backbone, args.size)
    if args.action == "add":
        _check_fits(backbone, args.file, size)
        entry = store.add_file(backbone, args.file, size=size)
        print(f"added {_describe(entry)}")
        return 0
    if backbone.weights_url:
        entry = store.fetch(backbone, size, print_fn=print)
    else:
        entry = _fetch_through_keras(store, backbone)
    print(_describe(entry))
    return 0


def _describe(entry) -> str:
    return f"{entry.label}: {entry.path} (sha256 {entry.sha256[:12]}, {entry.bytes:,} bytes)"


def _report(store, *, table: bool) -> int:
    rows = store.status()
    if not rows:
        print(f"the weights store {store.store_dir()} is empty: `kerakit weights fetch NAME` "
              "downloads a backbone's ImageNet file into it")  # fmt: skip
        return 0
    print(f"weights store: {store.store_dir()}")
    for entry, status, _ in rows:
        if table:
            print(f"{entry.key:20s} {entry.file:60s} {entry.bytes / 2**20:8.1f} MB  "
                  f"{entry.sha256[:12]}  {status}")  # fmt: skip
        else:
            print(f"{status:8s} {entry.key:20s} {entry.file}")
    bad = [entry.problem(status, actual) for entry, status, actual in rows if status != "ok"]
    if bad:
        raise store.StoreError("\n".join(bad))
    return 0


def _check_fits(backbone, path: str, size: int | None) -> None:
    """The file loads into the backbone (a wrong file is refused before it is recorded)."""
    if not os.path.isfile(path):
        return  # add_file says so, without starting TensorFlow
    from kerakit.models.backbones import build_backbone

    side = size or backbone.default_size
    build_backbone(backbone.name, (side, side, 3), weights=os.path.abspath(path))


def _fetch_through_keras(store, backbone):
    """A backbone whose file Keras alone knows: Keras downloads it (and checks its own hash),
    and the store keeps the weights as a ``.weights.h5``."""
    size = backbone.default_size
    known = store.lookup(backbone, (size, size, 3))
    if known is not None and known.check()[0] == "ok":
        print(f"{known.label}: already in the store, {known.path}")
        return known
    store.probe(backbone, "", "")
    import keras

    build = getattr(keras.applications, backbone.application)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(store.DOWNLOAD_TIMEOUT_S)  # urlretrieve has no timeout of its own
    try:
        model = build(include_top=False, weights="imagenet", input_shape=(size, size, 3))
    except Exception as e:
        if "URL fetch failure" in str(e) or isinstance(e, OSError):
            raise store.StoreError(store.offline_message(backbone, "", "", str(e))) from e
        raise
    finally:
        socket.setdefaulttimeout(previous)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, f"{backbone.name}_imagenet_notop.weights.h5")
        model.save_weights(path)
        origin = f"keras.applications.{backbone.application}(weights='imagenet', include_top=False)"
        return store.add_file(backbone, path, origin=origin)
