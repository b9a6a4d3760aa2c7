"""The shape of the house, held by tests: stages import only the stages before them, no
import cycle, no private name imported across modules, a TensorFlow-free recipe layer,
one-concept modules, and docs/ARCHITECTURE.md true to the files."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "kerakit"

# The flow, in order: a module may import its own stage and the stages before it.
STAGES = [
    ("kerakit", "kerakit.errors", "kerakit._files", "kerakit._net", "kerakit._compat",
     "kerakit._moved", "kerakit._stderr"),
    ("kerakit.recipe",),
    ("kerakit.report",),
    ("kerakit.data",),
    ("kerakit.augment",),
    ("kerakit.models",),
    ("kerakit.saving",),
    ("kerakit.export",),
    ("kerakit.training",),
    ("kerakit.inference",),
    ("kerakit.runs",),
    ("kerakit.serve",),
    ("kerakit.search",),
    ("kerakit.smoke",),
    ("kerakit.testing",),
    ("kerakit.pytest_plugin",),
    ("kerakit.commands",),
    ("kerakit.cli",),
    ("kerakit.launch",),
]  # fmt: skip
# Modules that import no TensorFlow and no Keras (`kerakit check` of a bad recipe, the
# reports, and `import kerakit` all run before TensorFlow starts).
TF_FREE = ("kerakit", "kerakit.errors", "kerakit._files", "kerakit._net", "kerakit._moved",
           "kerakit._stderr", "kerakit.recipe", "kerakit.report")  # fmt: skip
MAX_LINES = 400
# Modules over MAX_LINES lines that are one concept (ARCHITECTURE.md says why).
ONE_CONCEPT = {"kerakit.recipe.augment", "kerakit.saving.savedmodel", "kerakit.training.backups"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _stage(module: str) -> int:
    best = None
    for i, roots in enumerate(STAGES):
        for root in roots:
            hit = module == root or (root != "kerakit" and module.startswith(root + "."))
            if hit and (best is None or len(root) > best[1]):
                best = (i, len(root))
    if best is None:
        return 0 if module.rsplit(".", 1)[0] == "kerakit" else -1
    return best[0]


def _package(module: str) -> str:
    return module if module in ("kerakit",) else ".".join(module.split(".")[:2])


def _imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported kerakit module, names taken from it, line) for every import, lazy ones too."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("kerakit")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if not base.startswith("kerakit"):
                continue
            names = [a.name for a in node.names]
            submodules = [n for n in names if f"{base}.{n}" in MODULES]
            for name in submodules:
                out.append((f"{base}.{name}", [], node.lineno))
            rest = [n for n in names if n not in submodules]
            if rest or not submodules:
                out.append((base, rest, node.lineno))
    return out


def test_every_module_sits_in_a_stage():
    assert [m for m in MODULES if _stage(m) < 0] == []


def test_no_import_runs_up_the_flow():
    wrong = []
    for module in MODULES:
        here = _stage(module)
        for target, _, line in _imports(module):
            there = _stage(target)
            same_package = _package(target) == _package(module)
            if there > here or (there == here and here > 0 and not same_package):
                wrong.append(f"{MODULES[module].relative_to(REPO)}:{line} imports {target}")
    assert wrong == []


def test_no_module_imports_another_modules_private_name():
    wrong = []
    for module in MODULES:
        for target, names, line in _imports(module):
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            if private and target != module:
                wrong.append(f"{MODULES[module].relative_to(REPO)}:{line}: {target}.{private}")
        text = MODULES[module].read_text()
        aliases = re.findall(r"^\s*(?:import (kerakit[\w.]*) as|from kerakit[\w.]* import) (\w+)",
                             text, re.M)  # fmt: skip
        for _, alias in aliases:
            for m in re.finditer(rf"\b{alias}\._[a-z]\w*", text):
                wrong.append(f"{MODULES[module].relative_to(REPO)}: {m.group(0)}")
    assert wrong == []


def test_no_import_cycle():
    graph = {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}
    # `from kerakit.x import y` runs kerakit/x/__init__.py first: that is not a cycle of ours
    # unless the package's own __init__ imports back, which the graph below includes.
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for module in MODULES:
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_tensorflow_free_layer_imports_no_tensorflow():
    names = [
        m
        for m in MODULES
        if any(m == r or (r != "kerakit" and m.startswith(r + ".")) for r in TF_FREE)
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "    bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]\n"
        "    assert not bad, f'{name} imported {bad}'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_modules_are_one_concept_each():
    long = {
        m: n
        for m, p in MODULES.items()
        if (n := len(p.read_text().splitlines())) > MAX_LINES and m not in ONE_CONCEPT
    }
    assert long == {}, "split these, or say in ARCHITECTURE.md why each is one concept"
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    for module in ONE_CONCEPT:
        path = MODULES[module].relative_to(REPO).as_posix()
        assert re.search(rf"`{re.escape(path)}`.*one concept", text), path


def test_architecture_md_names_every_module_and_only_modules_that_exist():
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"`(kerakit/[\w/]+(?:\.py|/))`", text))
    files = {p.relative_to(REPO).as_posix() for p in MODULES.values() if p.name != "__init__.py"}
    files.add("kerakit/__init__.py")
    packages = {p.parent.relative_to(REPO).as_posix() + "/" for p in MODULES.values()
                if p.name == "__init__.py" and p.parent != PACKAGE}  # fmt: skip
    assert sorted(files - named) == [], "modules missing from ARCHITECTURE.md"
    assert sorted(packages - named) == [], "packages missing from ARCHITECTURE.md"
    assert sorted(named - files - packages) == [], "ARCHITECTURE.md names what does not exist"


def test_every_old_module_path_still_imports_warns_once_and_names_its_new_home():
    code = (
        "import importlib, json, warnings\n"
        "from kerakit._moved import MOVED\n"
        "out = {}\n"
        "for old in MOVED:\n"
        "    with warnings.catch_warnings(record=True) as seen:\n"
        "        warnings.simplefilter('always')\n"
        "        module = importlib.import_module(old)\n"
        "        importlib.import_module(old)  # a second import: no second warning\n"
        "    out[old] = [[str(w.message) for w in seen if w.category is FutureWarning],\n"
        "                [n for n in dir(module) if not n.startswith('_')]]\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.splitlines()[-1])
    for old, (warnings, names) in seen.items():
        assert len(warnings) == 1 and f"{old} has moved to kerakit." in warnings[0], (old, warnings)
        assert names, old


def test_old_paths_give_the_names_kerakit_0_1_0_had():
    """What the 0.1.0 notebooks, docs and tests imported from the old paths."""
    import warnings

    from kerakit.errors import Where

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from kerakit.checkpoint import SafeBackupAndRestore, SafeModelCheckpoint, load_backup
        from kerakit.distribute import max_steps_per_execution, tf_config_from_flags
        from kerakit.run import check, train
        from kerakit.transfer import (
            BACKBONES,
            BackbonePreprocess,
            cache_features,
            list_backbones,
            transfer_model,
        )
        from kerakit.transfer_spec import resolve_transfer

    import kerakit as kk
    from kerakit.models.layers import BackbonePreprocess as Preprocess
    from kerakit.training.backups import SafeBackupAndRestore as Backup

    assert SafeBackupAndRestore is Backup and BackbonePreprocess is Preprocess
    assert train is kk.train and check is kk.check and transfer_model is kk.transfer_model
    assert callable(load_backup) and callable(cache_features) and callable(tf_config_from_flags)
    from kerakit.training.callbacks import SafeModelCheckpoint as Checkpoint

    assert SafeModelCheckpoint is Checkpoint and max_steps_per_execution(None) is None
    assert "vgg16" in BACKBONES and list_backbones()
    assert resolve_transfer({"backbone": "vgg16", "head": {"classes": 2}}, Where())["backbone"]
