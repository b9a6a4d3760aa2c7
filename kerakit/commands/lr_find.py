"""`kerakit lr-find`: a learning rate for a recipe, tested before it is used (fastai's lr_find).

    kerakit lr-find configs/overview_mlp.yaml [--set K=V] [--out DIR] [--steps N] [--probe-steps N]

Sweeps the rate, reads the candidates off the loss curve (valley, steepest), probes each and
the optimizer's own rate from the same weights, and prints the table and the choice;
lr_find.png and lr_find.json go to DIR (default: output.dir/NAME-lr-find-TIME). The same
search runs inside `kerakit train` for `learning_rate: auto` (`kerakit.training.lr_find`).
"""

from __future__ import annotations

import argparse

NAME = "lr-find"
HELP = "find a learning rate for a recipe: a sweep, then short probe runs of the candidates"


def add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="a recipe YAML file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value (typed like YAML)")  # fmt: skip
    parser.add_argument("--out", metavar="DIR", help="where lr_find.png and lr_find.json go "
                        "(default: output.dir/NAME-lr-find-TIME)")  # fmt: skip
    parser.add_argument("--steps", type=_positive, default=100, metavar="N",
                        help="the sweep's steps, 1e-7 to 10 (default 100; it stops when the loss blows up)")  # fmt: skip
    parser.add_argument("--probe-steps", type=_positive, metavar="N",
                        help="training steps of each probe run (default one epoch, at most 200)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from kerakit.recipe import load_recipe

    recipe = load_recipe(args.recipe, overrides=args.overrides)  # fails before TensorFlow loads
    from kerakit.training.lr_find import LR_FIND_FILE, lr_find

    result = lr_find(recipe, out=args.out, steps=args.steps, probe_steps=args.probe_steps)
    print(f"wrote {result['path'] / LR_FIND_FILE} and lr_find.png")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of steps, got {text}")
    return value
