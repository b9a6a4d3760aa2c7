"""kerakit's pytest plugin: `pytest --kerakit PATH` runs the `kerakit smoke` checks on every
recipe under PATH, one test item per recipe, in your normal pytest report.

    pytest --kerakit recipes/                 # your tests, plus one item per recipe
    pytest recipes/ --kerakit recipes/        # the recipes only
    pytest --kerakit recipes/ --kerakit-steps 30 --kerakit-batches 1

A recipe is a `.yaml`/`.yml` file with top-level `data:` and `model:` keys; the item is
named after the file (`recipes/cnn.yaml::cnn`) and carries the `kerakit` marker. A failure
shows the check that failed, why, and the recipe's FILE:LINE:COL where it applies, with no
traceback; the row of checks and times and the notes (a stand-in data set, ...) are in
the item's report. Layers of your own are registered by importing their module, e.g. from
a `conftest.py`.

Registered through the `pytest11` entry point (pyproject.toml), so pytest loads it wherever
kerakit is installed. Without `--kerakit` it collects nothing and imports no TensorFlow.
The plugin also gives kerakit.testing's `kerakit_output` fixture.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kerakit.testing import kerakit_output  # noqa: F401  (a fixture for users' tests)

_ROOTS = pytest.StashKey[list]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kerakit", "kerakit recipes (the checks of `kerakit smoke`)")
    group.addoption("--kerakit", action="append", default=[], metavar="PATH",
                    help="smoke-test every kerakit recipe under PATH (a folder or a .yaml), "
                    "one test per recipe; repeatable")  # fmt: skip
    group.addoption("--kerakit-steps", type=int, default=None, metavar="N",
                    help="overfit-one-batch steps per recipe (default 20)")  # fmt: skip
    group.addoption("--kerakit-batches", type=int, default=None, metavar="N",
                    help="training batches in each recipe's data slice (default 2)")  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    paths = [Path(p).resolve() for p in config.getoption("kerakit", None) or []]
    config.stash[_ROOTS] = paths
    if not paths:
        return
    config.addinivalue_line("markers", "kerakit: the smoke checks of one kerakit recipe")
    given = [Path(str(a).split("::")[0]).resolve() for a in config.args]
    for path in paths:  # collected too, unless a path pytest collects holds it already
        if not any(path == a or a in path.parents for a in given):
            config.args.append(str(path))


def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    roots = parent.config.stash.get(_ROOTS, None)
    if not roots or file_path.suffix.lower() not in (".yaml", ".yml"):
        return None
    full = file_path.resolve()
    if not any(root == full or root in full.parents for root in roots):
        return None
    from kerakit.smoke.run import looks_like_recipe

    return RecipeFile.from_parent(parent, path=file_path) if looks_like_recipe(full) else None


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if any(isinstance(item, RecipeItem) for item in session.items):
        import kerakit.smoke.data  # noqa: F401  (TensorFlow: before the first recipe's clock)


class RecipeFile(pytest.File):
    """A recipe file: one item, named after the file."""

    def collect(self):
        yield RecipeItem.from_parent(self, name=self.path.stem)


class RecipeFailed(Exception):
    """A recipe failed a smoke check (or is invalid); carries the `SmokeResult`."""

    def __init__(self, result):
        super().__init__(result.explain())
        self.result = result


class RecipeItem(pytest.Item):
    """The smoke checks of one recipe (`kerakit.smoke.smoke`)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_marker("kerakit")

    def runtest(self) -> None:
        from kerakit.smoke.run import BATCHES, STEPS, format_row, header, smoke

        option = self.config.getoption
        try:  # messages name the recipe as the user would (relative to where pytest started)
            path = self.path.relative_to(self.config.invocation_params.dir)
        except ValueError:
            path = self.path
        result = smoke(path, steps=option("kerakit_steps") or STEPS,
                       batches=option("kerakit_batches") or BATCHES)  # fmt: skip
        width = len(result.name)
        lines = [header(width), format_row(result, width), *(f"note: {n}" for n in result.notes)]
        self.add_report_section("call", "kerakit smoke", "\n".join(lines))
        self.user_properties.append(("kerakit_smoke", format_row(result, width)))
        if not result.passed:
            raise RecipeFailed(result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, RecipeFailed):  # the check and why; no traceback
            return excinfo.value.result.explain()
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self):
        return self.path, None, f"kerakit smoke {self.path.name}"
