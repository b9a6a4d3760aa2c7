"""Figures without pyplot: a Figure on the Agg canvas that also shows inline in notebooks,
image grids, sample tables and one-line message figures (what `plots` draws with)."""

from __future__ import annotations

import math
import sys

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """A matplotlib Figure on the Agg canvas (no pyplot), shown inline in notebooks."""
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)  # draws and saves with no display and no pyplot
    _enable_notebook_display()
    return fig


def _enable_notebook_display() -> None:
    # A Figure made without pyplot only shows inline when IPython has a PNG
    # formatter for it, and IPython registers one only once pyplot's inline
    # backend is loaded. Add one when missing, leaving the user's own alone.
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return
    try:
        from IPython.core.pylabtools import print_figure

        formatter = shell.display_formatter.formatters["image/png"]
        try:
            formatter.lookup_by_type(Figure)
        except KeyError:
            formatter.for_type(Figure, lambda fig: print_figure(fig, "png"))
    except Exception:  # display is a convenience; never fail a plot over it
        pass


def message_figure(text: str) -> Figure:
    fig = figure(5, 1.5)
    fig.text(0.5, 0.5, text, ha="center", va="center")
    return fig


def is_image_batch(x: np.ndarray) -> bool:
    return x.ndim in (3, 4)  # (n, h, w) or (n, h, w, channels)


def displayable(x: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Images scaled to [0, 1] for imshow, and the colormap (gray or None)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 4 and x.shape[-1] not in (3, 4):
        x = x[..., 0]  # one channel, or an odd channel count: show the first
    finite = x[np.isfinite(x)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if lo >= 0 and hi <= 1:
        pass
    elif lo >= -1 and hi <= 1:
        x = (x + 1) / 2  # the [-1, 1] of tf/torch-style preprocess_input
    elif lo >= 0 and 64 < hi <= 255:
        x = x / 255  # raw pixels (a real 0-255 batch has some pixel above 64)
    else:  # e.g. sklearn digits (0-16) or standardized data: stretch the batch
        x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return np.clip(np.nan_to_num(x), 0, 1), ("gray" if x.ndim == 3 else None)


def image_grid(x: np.ndarray, titles: list[str], title_color: str = "black") -> Figure:
    images, cmap = displayable(x)
    count = len(images)
    ncols = min(count, math.ceil(math.sqrt(count)))
    nrows = math.ceil(count / ncols)
    lines = max(t.count("\n") + 1 for t in titles)
    band = 0.18 * lines + 0.1  # inches above each image for its title
    width, height = 1.9 * ncols, (1.7 + 0.25 * lines) * nrows
    # Tiles placed by hand: a layout engine would measure every tile's ticks
    # and text at each save (3x the time of the whole picture).
    fig = figure(width, height, layout=None)
    tile_w, tile_h = 1 / ncols, 1 / nrows
    pad_x, pad_y, top = 0.05 / width, 0.05 / height, band / height
    for i in range(count):
        r, c = divmod(i, ncols)
        left, bottom = c * tile_w + pad_x, 1 - (r + 1) * tile_h + pad_y
        ax = fig.add_axes((left, bottom, tile_w - 2 * pad_x, tile_h - top - 2 * pad_y))
        ax.imshow(images[i], cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(titles[i], fontsize="small", color=title_color)
        ax.set_axis_off()
    return fig


def table_figure(header: list[str], rows: list[list], x: np.ndarray) -> Figure:
    flat = np.asarray(x).reshape(len(x), -1)
    shown = min(flat.shape[1], 5)
    header = header + [f"x[{j}]" for j in range(shown)] + (["..."] if flat.shape[1] > 5 else [])
    cells = []
    for row, features in zip(rows, flat):
        extra = ["..."] if flat.shape[1] > 5 else []
        cells.append([str(c) for c in row] + [f"{v:.3g}" for v in features[:shown]] + extra)
    fig = figure(1.2 * len(header) + 1, 0.35 * (len(cells) + 1) + 0.5)
    ax = fig.add_subplot()
    ax.set_axis_off()
    table = ax.table(cellText=cells, colLabels=header, loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    return fig
