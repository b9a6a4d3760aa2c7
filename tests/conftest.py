"""Shared fixtures. Tests use real TensorFlow on tiny shapes."""

import os
import tempfile
import textwrap
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The index of Keras's names (kerakit.recipe.keras_names) goes to a folder of this test
# session, subprocesses included: tests never read or write the user's ~/.cache/kerakit.
os.environ["KERAKIT_CACHE"] = tempfile.mkdtemp(prefix="kerakit-test-cache-")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs"


@pytest.fixture
def write_recipe(tmp_path):
    """write_recipe(text, name="recipe.yaml") -> path of a dedented recipe file in tmp_path."""

    def write(text: str, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return write
