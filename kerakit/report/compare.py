"""Several runs in one picture: one learning curve each (`kerakit runs --plot METRIC`).

fig = plot_runs({"digits/0101-1200": {"val_loss": [0.9, 0.5]},
                 "digits/0101-1300": {"val_loss": [0.8, 0.6]}}, "val_loss")
save_figure(fig, "val_loss.png")
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kerakit.errors import DataError
from kerakit.report.figures import figure

_LOWER_IS_BETTER = ("loss", "error", "mae", "mse", "rmse", "mape", "msle", "hinge", "crossentropy")


def lower_is_better(metric: str) -> bool:
    """Whether a smaller value of `metric` is better: losses and errors (by their names)."""
    name = metric.lower().removeprefix("val_")
    return any(word in name for word in _LOWER_IS_BETTER)


def plot_runs(histories: Mapping[str, Mapping[str, list]], metric: str) -> Figure:
    """One curve of `metric` per run, on shared axes, labelled with the run's name.

    Args:
        histories: {label: {column: values per epoch}} (history.csv's columns).
        metric: the column to draw (`loss`, `val_accuracy`, ...).

    Returns:
        A `matplotlib.figure.Figure`.

    Raises:
        DataError: when no run logged `metric`, naming the columns they did log.
    """
    curves = {label: h[metric] for label, h in histories.items() if h.get(metric)}
    if not curves:
        logged = sorted({k for h in histories.values() for k in h if k != "epoch"})
        raise DataError(f"no run logged {metric!r}; they logged: {', '.join(logged) or 'nothing'}")
    fig = figure(7.0, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    for label, values in curves.items():
        y = np.array([v if isinstance(v, float) else np.nan for v in values], dtype=float)
        ax.plot(np.arange(1, len(y) + 1), y, "o-", markersize=3, label=label)
    ax.set_title(f"{metric} ({'lower' if lower_is_better(metric) else 'higher'} is better)")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(metric)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return fig
