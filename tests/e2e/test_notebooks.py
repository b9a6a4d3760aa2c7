"""The notebooks are committed clean: nbformat 4, the python3 kernel, no outputs.

Running them is nbmake's job (`python -m pytest -q --nbmake tests notebooks`);
these checks need no kernel and no TensorFlow, and catch a notebook saved with
its outputs (large diffs, stale numbers) or with a kernel CI does not have.
"""

import json

import nbformat
import pytest
from conftest import REPO

NOTEBOOKS = REPO / "notebooks"
EXPECTED = [
    "01_quickstart.ipynb",
    "02_python_api.ipynb",
    "03_augmentation.ipynb",
    "04_transfer_learning.ipynb",
]


def test_the_notebooks_are_there():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_is_valid_and_clean(name):
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 5
    dirty = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count)
    ]
    assert dirty == [], f"{name}: cells {dirty} have outputs; clear them before committing"
    # A markdown cell first: each notebook says what it shows before any code.
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    # No widget state or other saved session data in the metadata.
    assert set(nb.metadata) <= {"kernelspec", "language_info"}, json.dumps(dict(nb.metadata))


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_is_in_the_readme(name):
    assert name in (NOTEBOOKS / "README.md").read_text()
