"""Recipes, with no TensorFlow: YAML in, a validated, resolved `Recipe` out.

One module per recipe section (`data`, `augment`, `model`, `transfer`,
`compile`, `train` with `callbacks`, `output`), each with its registry beside
it, plus the YAML reader, the shared validators (`schema`), the registries'
one shape (`registry`) and run identity (`fingerprint`). A recipe with a
schema error is rejected before TensorFlow is imported.

    from kerakit.recipe import load_recipe
    recipe = load_recipe("configs/digits_cnn.yaml", overrides=["train.epochs=3"])
"""

from kerakit.recipe.compile import COMPILE_KEYS, resolve_compile_section
from kerakit.recipe.loader import (
    TOP_KEYS,
    Recipe,
    apply_overrides,
    load_recipe,
    parse_key_path,
    resolve,
)
from kerakit.recipe.model import (
    MODEL_KINDS,
    layer_entry,
    resolve_functional,
    resolve_model,
    resolve_sequential,
)
from kerakit.recipe.output import FORMATS, resolve_output
from kerakit.recipe.registry import REGISTRIES, Registry
from kerakit.recipe.train import DISTRIBUTE, PRECISION, TRAIN_KEYS, resolve_train

__all__ = [
    "COMPILE_KEYS", "DISTRIBUTE", "FORMATS", "MODEL_KINDS", "PRECISION", "TOP_KEYS", "TRAIN_KEYS",
    "Recipe", "apply_overrides", "layer_entry", "load_recipe", "parse_key_path", "resolve",
    "resolve_compile_section", "resolve_functional", "resolve_model", "resolve_output",
    "resolve_sequential", "resolve_train", "Registry", "registries",
]  # fmt: skip


def registries() -> dict[str, Registry]:
    """Every registry by kind: compile presets, augmentation presets, backbones, callback bundles.

    Each lives beside the recipe section that names its entries; importing this
    package made them all.
    """
    return dict(REGISTRIES)
