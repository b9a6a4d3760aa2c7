"""The one refusal of a model file: what was found, the risk, and the one opt-in."""

from __future__ import annotations

from typing import Any

from kerakit.errors import ModelFileError

MAX_CONFIG_BYTES = 32 * 1024 * 1024  # real configs are well under 1 MiB
MAX_ZIP_MEMBERS = 10_000  # entries of an archive, files of a SavedModel folder

OPT_IN = (
    "Only if you trust whoever made this file, load it with "
    "`kk.load_model(path, trusted=True)` (command line: `--unsafe`); that lets Keras "
    "run code stored in the file, with your permissions."
)


def refuse(path: Any, why: str) -> ModelFileError:
    return ModelFileError(
        f"{path}: refused to load: {why}. Loading it could run code from the file or read "
        f"or write files on this machine. {OPT_IN}"
    )
