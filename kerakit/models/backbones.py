"""Backbones: a frozen `keras.applications` model without top, with its weights.

The backbone registry is plain data in `kerakit.recipe.transfer`; this module
resolves an entry through Keras itself. ImageNet weights come from Keras's
cache or a download (probed first, so no network fails in seconds with what
to do), or from a local weights file.
"""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

import keras

from kerakit._net import unreachable
from kerakit.errors import NOWHERE, ModelFileError, RecipeError, Where, did_you_mean
from kerakit.recipe import weights_store
from kerakit.recipe.transfer import BACKBONES, Backbone

PROBE_TIMEOUT_S = 5.0  # a connect() to the weights host; no network must fail in seconds
DOWNLOAD_TIMEOUT_S = 60.0  # per socket operation while Keras downloads: a stall is an error


class WeightsError(RecipeError, ModelFileError):
    """Backbone weights cannot be had: no network for ImageNet, or a bad weights file."""


def backbone_info(name: str, where: Where) -> Backbone:
    if not isinstance(name, str) or name.lower() not in BACKBONES:
        raise where.error(
            f"unknown backbone {name!r}{did_you_mean(name, BACKBONES)}; "
            f"choose one of: {', '.join(BACKBONES)}"
        )
    return BACKBONES[name.lower()]


def preprocess_fn(name: str):
    module = importlib.import_module(f"keras.applications.{BACKBONES[name].module}")
    return module.preprocess_input


def build_backbone(
    name: str,
    input_shape: Sequence[int] = (224, 224, 3),
    weights: str = "imagenet",
    where: Where = NOWHERE,
) -> keras.Model:
    """A frozen ``keras.applications`` model without top, named ``"backbone"``.

    Args:
        name: a registered backbone name (see `list_backbones`).
        input_shape: ``(height, width, 3)``.
        weights: ``"imagenet"`` (Keras downloads them once into ``~/.keras/models``),
            ``"none"`` (random init) or the path to a ``.weights.h5`` / ``.h5`` file.
        where: where ``model.transfer`` sits in the recipe.
    """
    info = backbone_info(name, where.at("backbone"))
    build = getattr(keras.applications, info.application)
    # named after it is built: some constructors read their `name` (EfficientNetV2 looks its
    # blocks up by it, ConvNeXt prefixes its layers with it)
    kwargs = {"include_top": False, "input_shape": tuple(input_shape)}
    if weights == "imagenet":
        model = _imagenet_backbone(build, info, kwargs, where.at("weights"))
    else:
        model = build(weights=None, **kwargs)
        if weights not in (None, "none"):
            _load_weights_file(model, str(weights), info, where.at("weights"))
    model.name = "backbone"
    model.trainable = False
    return model


def _imagenet_backbone(build, info: Backbone, kwargs: dict, where: Where) -> keras.Model:
    stored = weights_store.lookup(info, kwargs["input_shape"])
    if stored is not None:  # `kerakit weights fetch/add` kept it: no network, hash checked
        return _stored_backbone(build, info, kwargs, stored, where)
    url = info.imagenet_url(kwargs["input_shape"])
    fname = info.imagenet_file(kwargs["input_shape"])
    for folder in weights_store.keras_cache_dirs() if fname else []:
        cached = os.path.join(folder, fname)
        if os.path.isfile(cached):  # Keras downloaded it before: no network needed
            return build(weights=cached, **kwargs)
    if not url:  # Keras knows the file and reads its own cache; the host is Keras's
        url = "https://storage.googleapis.com/"
        fname = f"the no-top ImageNet weights of keras.applications.{info.application}"

    def fail(reason: str) -> WeightsError:
        return where.error(
            f"cannot download the ImageNet weights of {info.name} ({reason}). With no "
            f"network here, download {url} elsewhere, copy it to this machine and pass the "
            f"local file: `weights: /path/to/{fname}` in the recipe (Python: "
            f"weights='/path/to/{fname}'), or record it once in kerakit's weights store: "
            f"`kerakit weights add {info.name} /path/to/{fname}` (then `weights: imagenet` "
            f"works offline), or put it in ~/.keras/models/; "
            f"or use `weights: none` to train from scratch",
            cls=WeightsError,
        )

    reason = unreachable(urlsplit(url).hostname, 443, PROBE_TIMEOUT_S)
    if reason:
        raise fail(reason)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # urlretrieve has no timeout of its own
    try:
        return build(weights="imagenet", **kwargs)
    except Exception as e:
        if "URL fetch failure" in str(e) or isinstance(e, OSError):
            raise fail(str(e)) from e
        raise
    finally:
        socket.setdefaulttimeout(previous)


def _stored_backbone(
    build, info: Backbone, kwargs: dict, entry: weights_store.Entry, where: Where
) -> keras.Model:
    status, actual = entry.check()  # every build: a file changed since it was recorded is refused
    if status != "ok":
        raise where.error(entry.problem(status, actual), cls=WeightsError)
    model = build(weights=None, **kwargs)
    _load_weights_file(model, str(entry.path), info, where)  # as Keras loads its own files
    return model


def _load_weights_file(model: keras.Model, path: str, info: Backbone, where: Where) -> None:
    if not os.path.isfile(path):
        raise where.error(
            f"weights file {path!r} not found; give imagenet, none, or the path to a "
            f".weights.h5 / .h5 file",
            cls=WeightsError,
        )
    try:
        model.load_weights(path)  # what Keras does with its own no-top .h5 files
        return
    except Exception as e:
        first = e
    if path.endswith((".h5", ".hdf5")) and not path.endswith(".weights.h5"):
        # A file with top (or other extra layers): match layers by name instead.
        import h5py

        with h5py.File(path, "r") as f:
            names = {
                n.decode() if isinstance(n, bytes) else n for n in f.attrs.get("layer_names", [])
            }
        ours = {layer.name for layer in model.layers if layer.weights}
        if ours & names:
            try:
                model.load_weights(path, by_name=True, skip_mismatch=True)
                return
            except Exception as e:
                first = e
    raise where.error(
        f"weights file {path!r} does not fit {info.name} with input shape "
        f"{list(model.input_shape[1:])} and no top: {first}. Give the no-top file of "
        f"{info.name}, e.g. {info.imagenet_file()}",
        cls=WeightsError,
    ) from first
