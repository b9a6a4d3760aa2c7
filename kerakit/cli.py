"""The `kerakit` command: a thin shell over the functions a notebook calls.

    kerakit check RECIPE [--set KEY=VALUE ...]
    kerakit train RECIPE [--set KEY=VALUE ...] [--epochs N] [--resume RUN]
    kerakit evaluate RUN_OR_MODEL [--data SOURCE] [--tta N]
    kerakit predict RUN_OR_MODEL INPUT... [--text TEXT]... [--output FILE]
    kerakit augment RECIPE --preview out.png
    kerakit smoke RECIPE_OR_FOLDER... [--steps N] [--batches N] [--set KEY=VALUE ...]
    kerakit list presets|bundles|backbones|augment
    kerakit weights fetch|add|list|verify ...      (kerakit/commands/: one module each)
    kerakit lr-find RECIPE
    kerakit search RECIPE [--workers N] [--join STORAGE]
    kerakit export RUN [--format savedmodel,onnx,litert] [--quantize int8]
    kerakit serve RUN [--port N]
    kerakit runs [DIR] | diff RUN_A RUN_B | reproduce RUN

A mistake in the input (a bad recipe, a missing file, a corrupt model, a full
disk) exits with status 2 and one clear message; `--debug` shows the traceback
too, and TensorFlow's C++ start-up chatter, otherwise left out (`kerakit._stderr`).
"""

from __future__ import annotations

import argparse
import errno
import os
import re
import sys
import traceback
from pathlib import Path

from kerakit import __version__
from kerakit._stderr import StderrFilter
from kerakit.commands import commands
from kerakit.errors import (
    KerakitError,
    RecipeError,
    TrainingDiverged,
    TrainingInterrupted,
    Where,
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own usage errors: status 2, no traceback
        self.print_usage(sys.stderr)
        print(f"kerakit: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="kerakit", description="Recipes, builders and training runs over tf.keras.")
    p.add_argument("--version", action="version", version=f"kerakit {__version__}")
    p.add_argument("--debug", action="store_true", help="show Python tracebacks")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="CODE",
                   help="a .py file or module that registers your layers, losses, ... (repeatable)")  # fmt: skip
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def recipe_cmd(name, help_):
        c = sub.add_parser(name, help=help_)
        c.add_argument("recipe", help="a recipe YAML file")
        c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a recipe value, e.g. --set train.epochs=5 (typed like YAML)")  # fmt: skip
        c.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
        return c

    recipe_cmd("check", "validate a recipe, build and compile its model, print the summary")
    t = recipe_cmd("train", "train a recipe and leave a run folder")
    t.add_argument("--epochs", type=int, help="override train.epochs")
    t.add_argument(
        "--resume",
        metavar="RUN",
        help="resume this run folder (default: the newest unfinished run)",
    )
    t.add_argument(
        "--new", action="store_true", help="start a new run even if an unfinished one exists"
    )
    t.add_argument("--run-dir", metavar="DIR",
                   help="train in exactly this folder (a new run, or the one it holds resumed)")  # fmt: skip
    t.add_argument(
        "--workers",
        metavar="HOST:PORT,...",
        help="multi-worker training: every worker, same order on each",
    )
    t.add_argument(
        "--worker-index",
        type=int,
        metavar="I",
        help="this worker's index in --workers (0 is the chief)",
    )
    a = recipe_cmd("augment", "preview the recipe's augmentation")
    a.add_argument(
        "--preview",
        metavar="PNG",
        required=True,
        help="write a grid of original and augmented images",
    )
    a.add_argument("-n", type=int, default=16, help="number of images")

    sm = sub.add_parser(
        "smoke",
        help="check that recipes build, learn, save and reload, in seconds on a slice of their data",
    )
    sm.add_argument("recipes", nargs="+", metavar="RECIPE", help="recipe files or folders of them")
    sm.add_argument("--steps", type=int, help="overfit-one-batch steps (default 20)")
    sm.add_argument("--batches", type=int, help="training batches in the data slice (default 2)")
    sm.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a value of every recipe (typed like YAML)")  # fmt: skip
    sm.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )

    e = sub.add_parser("evaluate", help="evaluate a run folder or a model file on test data")
    e.add_argument("model", metavar="RUN_OR_MODEL")
    e.add_argument(
        "--data",
        metavar="SOURCE",
        help="a data source (as in data.source); default: the run's recipe",
    )
    e.add_argument("--tta", type=int, default=0, metavar="N",
                   help="also the accuracy with test-time augmentation: N augmented passes "
                   "averaged with the plain one (image classifiers)")  # fmt: skip
    _model_file_flags(e)

    pr = sub.add_parser("predict", help="predict with a run folder or a model file")
    pr.add_argument("model", metavar="RUN_OR_MODEL")
    pr.add_argument(
        "inputs", nargs="*", metavar="INPUT",
        help="image files, a .npy/.npz, or a .csv; .txt files (one text each) for a text model",
    )  # fmt: skip
    pr.add_argument("--text", action="append", default=[], metavar="TEXT",
                    help="a raw text to classify with a text model (repeatable)")  # fmt: skip
    pr.add_argument("--output", metavar="FILE", help="write predictions to a .csv, .json or .npy "
                    "file; an image-to-image model's outputs to a folder of PNG files or a .npy")  # fmt: skip
    pr.add_argument("--top", type=int, default=3, help="classes to show per input (default 3)")
    _model_file_flags(pr)

    ls = sub.add_parser(
        "list",
        help="list kerakit's registries, or the entries of one: presets, bundles, backbones, augment",
    )
    ls.add_argument("what", nargs="?", help="a registry (default: list the registries)")
    for name, module in commands().items():  # kerakit/commands/: one module a subcommand
        c = sub.add_parser(name, help=module.HELP)
        module.add(c)
        c.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )
    return p


def _model_file_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--unsafe",
        action="store_true",
        help="trust the model file (allows code in it; see docs/security.md)",
    )
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 1 other failure)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.debug and _FILTER is not None:  # --debug: TensorFlow's own lines too
        _FILTER.stop()
    # TensorFlow's C++ start-up chatter hides kerakit's messages; users can still set their own level.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return int(_dispatch(args, argv) or 0)
    except TrainingInterrupted as exc:
        print(flush=True)  # end the progress bar's line: the message starts on a line of its own
        print(f"interrupted: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KerakitError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_status", 2)  # 2: bad input; 1: e.g. an export's parity gate
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a kerakit bug, or a failure deep inside TensorFlow
        if args.debug:
            traceback.print_exc()
        if (full := _disk_full(exc)) is not None:
            print(f"error: disk full: {full}; free some space and run again (kerakit "
                  "replaces files atomically: what was there before is intact)",
                  file=sys.stderr)  # fmt: skip
            return 2
        print(f"error: {type(exc).__name__}: {exc}\n(unexpected; run again with --debug for the "
              "traceback, and please report it)", file=sys.stderr)  # fmt: skip
        return 1


def entry() -> None:
    """The `kerakit` console script: `main()`, then a quick exit.

    With TensorFlow loaded, the interpreter's own shutdown takes about a second
    here (tearing down TensorFlow's modules and thread pools) and does nothing
    kerakit needs: every file a command writes is closed (and fsynced) before
    `main()` returns. So after a command that succeeded (0) or refused its
    input (2), this runs the atexit handlers, flushes stdout and stderr, and
    leaves with `os._exit`. An interrupted or failed run shuts down normally
    (a writer left open mid-epoch gets its usual chance to flush). Set
    KERAKIT_FAST_EXIT=0 for a normal shutdown always. Calling `main()` from
    Python never exits.
    """
    global _FILTER
    _FILTER = StderrFilter.start()  # TensorFlow's chatter left out until main() returns
    try:
        code = main()
    finally:
        if _FILTER:
            _FILTER.stop()
    fast = os.environ.get("KERAKIT_FAST_EXIT", "1") != "0" and code in (0, 2)
    if fast and "tensorflow" in sys.modules:
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: nothing more can be said
                pass
        os._exit(code)
    sys.exit(code)


def _disk_full(exc: BaseException) -> str | None:
    """The reason, "PATH: No space left on device", if `exc` (or its cause) is a full disk."""
    for _ in range(16):  # the error, then the ones it came from
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            why, name = exc.strerror or os.strerror(exc.errno), exc.filename
            if name is None:
                return why
            path = Path(os.fsdecode(name))  # the atomic writer's temporary -> the file it stood for
            hit = re.fullmatch(r"\.(?:tmp|old)-\d+-[0-9a-f]{8}-(.+)", path.name)
            return f"{path.with_name(hit.group(1)) if hit else path}: {why}"
        if re.search("No space left on device|Disk quota exceeded", str(exc)):
            return str(exc)  # TensorFlow's and h5py's errors carry the words, not the errno
        if (exc := exc.__cause__ or exc.__context__) is None:
            return None
    return None


_FILTER: StderrFilter | None = None  # installed by entry()


def _dispatch(args, argv) -> int:
    cmd = args.command
    if args.imports:  # the user's own code, as a recipe's `imports:` names it
        from kerakit.recipe.usercode import import_code, resolve_imports

        where = Where("--import", {(): ("--import",)}, ())
        for record in import_code(resolve_imports(args.imports, where, "."), ".", where):
            print(f"imported: {record['import']} ({record['file']})")
    if cmd == "list":
        return _list(args.what)
    if (module := commands().get(cmd)) is not None:
        return module.run(args)
    if cmd == "check":
        from kerakit.recipe import load_recipe

        recipe = load_recipe(args.recipe, overrides=args.overrides)  # fails before TensorFlow loads
        from kerakit.training.run import check

        check(recipe, print_fn=print)
        return 0
    if cmd == "train":
        from kerakit.recipe import load_recipe

        overrides = list(args.overrides)
        if (args.workers is None) != (args.worker_index is None):
            raise RecipeError("--workers and --worker-index go together", file="command line")
        if args.workers is not None:
            import json

            from kerakit.training.cluster import tf_config_from_flags

            os.environ["TF_CONFIG"] = json.dumps(
                tf_config_from_flags(args.worker_index, args.workers)
            )
            overrides.append("train.distribute=multi_worker")
        if args.epochs is not None:
            overrides.append(f"train.epochs={args.epochs}")
        recipe = load_recipe(args.recipe, overrides=overrides)
        from kerakit.training.run import train

        run = train(recipe, resume=args.resume, new=args.new, run_dir=args.run_dir,
                    command=["kerakit", *argv])  # fmt: skip
        print(f"run folder: {run.path}")
        return 0
    if cmd == "evaluate":
        from kerakit.inference import evaluate

        metrics = evaluate(args.model, data=args.data, trusted=args.unsafe, print_fn=print,
                           tta=args.tta)  # fmt: skip
        for k, v in metrics.items():
            print(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")
        return 0
    if cmd == "predict":
        from kerakit.inference import predict_files

        predict_files(
            args.model,
            args.inputs,
            output=args.output,
            top=args.top,
            trusted=args.unsafe,
            print_fn=print,
            texts=args.text,
        )
        return 0
    if cmd == "augment":
        from kerakit.recipe import load_recipe

        recipe = load_recipe(args.recipe, overrides=args.overrides)
        from kerakit.inference import preview_augmentation

        path = preview_augmentation(recipe, args.preview, n=args.n)
        print(f"wrote {path}")
        return 0
    if cmd == "smoke":
        from kerakit.smoke.run import smoke_command

        return smoke_command(args.recipes, steps=args.steps, batches=args.batches,
                             overrides=args.overrides, print_fn=print)  # fmt: skip
    raise AssertionError(cmd)  # pragma: no cover


def _list(what: str | None) -> int:
    """`kerakit list`: the registries; `kerakit list KIND`: each entry and its one line."""
    from kerakit.errors import did_you_mean
    from kerakit.recipe import registries

    tables = registries()
    if what is None:
        table = {kind: f"{r.summary} ({len(r)})" for kind, r in tables.items()}
        print("kerakit list KIND shows the entries of one of:")
    elif what in tables:
        table = tables[what].describe()
    else:
        raise KerakitError(
            f"kerakit list: no registry {what!r}{did_you_mean(what, tables)}; "
            f"choose one of: {', '.join(tables)}"
        )
    for name, description in table.items():
        print(f"{name:20s} {description}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    entry()
