"""What a search leaves in its folder: trials.csv, best.yaml (the best trial's recipe, a
plain recipe `kerakit train` runs as is), Optuna's pictures and report.md."""

from __future__ import annotations

import csv
import io
import warnings
from pathlib import Path

from kerakit._files import write_text
from kerakit.recipe.reader import dump_yaml, load_yaml
from kerakit.search.study import folder_number, optuna

TRIALS_FILE = "trials.csv"
BEST_FILE = "best.yaml"
REPORT_FILE = "report.md"
PICTURES = {
    "history.png": ("plot_optimization_history", "the best value as trials went on"),
    "importances.png": ("plot_param_importances", "how much each value mattered (fANOVA)"),
    "parallel.png": ("plot_parallel_coordinate", "each trial's values and its result"),
}
RUN_RECIPE = "recipe.resolved.yaml"


def trial_rows(study, spec: dict) -> list[dict]:
    """A row per trial: number, state, the metric, the values, the run folder."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row = {"trial": t.number, "state": t.state.name.lower(),
               spec["metric"]: "" if t.value is None else t.value}  # fmt: skip
        row.update({k: t.params.get(k, "") for k in spec["space"]})
        row["run"] = t.user_attrs.get("run_dir", "")
        row["note"] = t.user_attrs.get("outcome", "")
        if t.user_attrs.get("folder") is not None:
            row["note"] = (row["note"] + f" resumes trial {folder_number(t)}").strip()
        rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    """The trials as aligned text for the console."""
    if not rows:
        return "(no trials yet)"
    keys = [k for k in rows[0] if k != "run"]
    cells = [[_cell(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(cell, widths)) for cell in cells]
    return "\n".join(lines)


def _cell(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_results(study, spec: dict, folder: Path) -> dict:
    """Writes trials.csv, best.yaml, the pictures and report.md; returns
    {"best": the best FrozenTrial or None, "files": [written paths]}."""
    rows = trial_rows(study, spec)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_text(folder / TRIALS_FILE, buf.getvalue())
    files = [folder / TRIALS_FILE]
    op = optuna()
    complete = study.get_trials(deepcopy=False, states=(op.trial.TrialState.COMPLETE,))
    best = study.best_trial if complete else None
    run = Path(best.user_attrs.get("run_dir", "")) if best is not None else None
    # (a best trial trained by a worker on another machine has its folder there)
    if run is not None and (run / RUN_RECIPE).is_file():
        value, _ = load_yaml((run / RUN_RECIPE).read_bytes(), str(run / RUN_RECIPE))
        header = (f"# The best trial ({best.number}) of the search in {folder}: "
                  f"{spec['metric']} = {best.value:.6g}\n# values: {best.params}\n"
                  f"# run folder: {run}\n")  # fmt: skip
        write_text(folder / BEST_FILE, header + dump_yaml(value))
        files.append(folder / BEST_FILE)
    pictures = _pictures(study, folder, len(complete))
    files += pictures
    write_text(folder / REPORT_FILE, _report(spec, rows, best, pictures, folder))
    files.append(folder / REPORT_FILE)
    return {"best": best, "files": files}


def _pictures(study, folder: Path, complete: int) -> list[Path]:
    if complete < 2:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    for name, (fn, _) in PICTURES.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                ax = getattr(optuna().visualization.matplotlib, fn)(study)
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            fig.savefig(folder / name, dpi=90)
            plt.close(fig)
            out.append(folder / name)
        except (ValueError, RuntimeError, ImportError, ZeroDivisionError):
            plt.close("all")  # e.g. importances with one value that never varied
    return out


def _report(spec: dict, rows: list[dict], best, pictures: list[Path], folder: Path) -> str:
    lines = [f"# Search: {spec['metric']} ({spec['direction']})", ""]
    if best is not None:
        lines += [f"Best: trial {best.number}, {spec['metric']} = {best.value:.6g}, values "
                  f"{best.params}; its recipe: `{BEST_FILE}` (`kerakit train {BEST_FILE}`).", ""]  # fmt: skip
    lines += [f"Sampler {spec['sampler']}, pruner {spec['pruner']}; {len(rows)} trials.", ""]
    if rows:
        keys = [k for k in rows[0] if k != "run"]
        lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_cell(r[k]) for k in keys) + " |" for r in rows]
        lines.append("")
    for path in pictures:
        lines += [f"![{PICTURES[path.name][1]}]({path.name})", "", PICTURES[path.name][1], ""]
    return "\n".join(lines)
