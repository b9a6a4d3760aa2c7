"""Pictures beyond classification: predicted vs true, forecasts, input / target / output
samples, and series drawn as lines.

    fig = plot_predictions(y_test, model.predict(x_test))        # a regression
    fig = show_forecasts(windows, y_test, model.predict(windows))  # a forecaster
    fig = show_samples(noisy, clean, model.predict(noisy))       # a denoising autoencoder
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from kerakit.errors import DataError
from kerakit.report.figures import displayable, figure, message_figure
from kerakit.report.kinds import input_kind
from kerakit.report.metrics import regression_report

_MAX_POINTS = 5000  # a scatter of more points than this draws a seeded sample of them


def plot_predictions(y_true: Any, y_pred: Any) -> Figure:
    """A regression's predictions: predicted vs true with the diagonal, and the residuals.

    Targets of several values per example (several outputs, a forecast horizon) are
    pooled. The title gives R², MAE and RMSE over the test samples.

    Args:
        y_true: the true values, `(n,)` or `(n, k)`.
        y_pred: the model's predictions, the same shape.

    Example:
        >>> fig = plot_predictions([1.0, 2.0, 3.0], [1.1, 1.9, 3.2])
    """
    t, p = _pair(y_true, y_pred)
    if t.size == 0:
        return message_figure("No test samples to compare.")
    r = regression_report(t, p)
    fig = figure(9.0, 4.0)
    ax = fig.add_subplot(1, 2, 1)
    shown = np.random.default_rng(0).permutation(t.size)[:_MAX_POINTS]
    ax.scatter(t[shown], p[shown], s=8, alpha=0.5, edgecolors="none")
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], "--", color="gray", linewidth=1, label="predicted = true")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(f"R² {r['r2']:.3f}, MAE {r['mae']:.3g}, RMSE {r['rmse']:.3g}")
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    ax = fig.add_subplot(1, 2, 2)
    residuals = p - t
    ax.hist(residuals, bins=min(40, max(5, int(math.sqrt(residuals.size)))), color="tab:blue")
    ax.axvline(0, color="gray", linestyle="--", linewidth=1)
    ax.set_xlabel("residual (predicted - true)")
    ax.set_ylabel("samples")
    ax.set_title(f"residuals of {residuals.size} values (mean {residuals.mean():.3g})")
    return fig


def show_forecasts(x: Any, y_true: Any, y_pred: Any, n: int = 6) -> Figure:
    """A forecaster's windows: the input series, then the true and forecast values after it.

    `n` windows evenly spaced over the test set. Up to three input features are drawn
    in gray; the target (one value per window, or a horizon of values) follows the
    window's last step, on its own axis when the window has several features.

    Args:
        x: windows `(count, steps, features)` or `(count, steps)`.
        y_true: the true targets, `(count,)` or `(count, horizon)`.
        y_pred: the forecasts, the same shape.
        n: how many windows to show; defaults to 6.
    """
    windows = _as_series(x)
    t, p = (np.asarray(a, dtype=np.float64).reshape(len(windows), -1) for a in (y_true, y_pred))
    if len(windows) == 0:
        return message_figure("No test windows to show.")
    picked = np.unique(np.linspace(0, len(windows) - 1, min(n, len(windows))).round().astype(int))
    ncols = min(len(picked), 3)
    nrows = math.ceil(len(picked) / ncols)
    fig = figure(4.2 * ncols, 2.8 * nrows)
    steps, horizon = windows.shape[1], t.shape[1]
    after = np.arange(steps, steps + horizon)
    for k, i in enumerate(picked):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        for f in range(min(windows.shape[2], 3)):
            ax.plot(windows[i, :, f], color=str(0.2 + 0.25 * f), linewidth=1)
        target = ax.twinx() if windows.shape[2] > 1 else ax
        target.plot(after, t[i], "o-", color="black", markersize=4, label="true")
        target.plot(after, p[i], "x--", color="tab:red", markersize=6, label="forecast")
        error = float(np.abs(p[i] - t[i]).mean())
        ax.set_title(f"window {i}: error {error:.3g}", fontsize="small")
        ax.set_xlabel("step", fontsize="small")
        if k == 0:
            target.legend(fontsize="x-small", loc="upper left")
    return fig


def show_samples(x: Any, y_true: Any, y_pred: Any, n: int = 6) -> Figure:
    """Input / target / output of a model whose output has its input's shape.

    Images are drawn as rows of three tiles (one shared value scale); series as one
    line plot per sample with the three curves. The first `n` samples are shown.

    Args:
        x: the inputs (images or series).
        y_true: the targets, the inputs' shape.
        y_pred: the model's outputs, the inputs' shape.
        n: how many samples; defaults to 6.
    """
    x, t, p = (np.asarray(a)[:n] for a in (x, y_true, y_pred))
    if len(x) == 0:
        return message_figure("No test samples to show.")
    if not (x.shape == t.shape == p.shape):
        raise DataError(f"x, y_true and y_pred must have one shape; got {x.shape}, {t.shape}, {p.shape}")  # fmt: skip
    if input_kind(x.shape[1:], x.dtype) == "series":  # steps x features
        return _series_samples(_as_series(x), _as_series(t), _as_series(p))
    images, cmap = displayable(np.concatenate([a.astype(np.float32) for a in (x, t, p)]))
    count = len(x)
    # Tiles placed by hand (as figures.image_grid): a row of 1.6 inches under a title band.
    top, row = 0.3, 1.6
    fig = figure(3 * row, top + row * count, layout=None)
    height, band, pad = row / fig.get_figheight(), top / fig.get_figheight(), 0.04 / row
    for i in range(count):
        for k, title in enumerate(("input", "target", "output")):
            bottom = 1 - band - (i + 1) * height
            ax = fig.add_axes(
                (
                    k / 3 + pad / 3,
                    bottom + pad * height,
                    1 / 3 - 2 * pad / 3,
                    height * (1 - 2 * pad),
                )
            )
            ax.imshow(images[i + k * count], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            if i == 0:
                ax.set_title(title, fontsize="small")
            ax.set_axis_off()
    return fig


def series_grid(x: Any, titles: Sequence[str], title_color: str = "black") -> Figure:
    """Small line plots of series (one feature per line, three at most), titled."""
    series = _as_series(x)
    count = len(series)
    ncols = min(count, 4)
    nrows = math.ceil(count / ncols)
    lines = max(t.count("\n") + 1 for t in titles)
    fig = figure(2.6 * ncols, (1.5 + 0.25 * lines) * nrows, layout=None)
    fig.subplots_adjust(left=0.03, right=0.99, bottom=0.04, top=0.9, hspace=0.35 + 0.25 * lines)
    for i in range(count):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.plot(series[i, :, : min(series.shape[2], 3)], linewidth=0.8)
        ax.set_title(titles[i], fontsize="small", color=title_color)
        ax.tick_params(labelsize="x-small")
        ax.set_yticks([])
    return fig


def _series_samples(x: np.ndarray, t: np.ndarray, p: np.ndarray) -> Figure:
    count = len(x)
    ncols = min(count, 2)
    nrows = math.ceil(count / ncols)
    fig = figure(5.0 * ncols, 2.4 * nrows, layout=None)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.06, top=0.92, hspace=0.45)
    for i in range(count):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        for a, label, style in ((x, "input", "-"), (t, "target", "-"), (p, "output", "--")):
            ax.plot(a[i, :, 0], style, linewidth=1, label=label)
        ax.set_title(f"sample {i} (feature 0)", fontsize="small")
        if i == 0:
            ax.legend(fontsize="x-small")
    return fig


def _as_series(x: Any) -> np.ndarray:
    """`(count, steps, features)` floats from `(count, steps)` or `(count, steps, features)`."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2:
        return a[:, :, None]
    if a.ndim != 3:
        raise DataError(f"series must have shape (count, steps) or (count, steps, features); got {a.shape}")  # fmt: skip
    return a


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.size != p.size:
        raise DataError(
            f"y_true holds {t.size} values but y_pred {p.size}; predict on the same samples"
        )
    return t, p
