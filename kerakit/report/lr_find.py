"""The numbers and the picture of a learning-rate sweep (fastai's `lr_find`), in NumPy and
matplotlib: the smoothed loss, the candidates it suggests, and `lr_find.png`.

    smooth = smoothed_losses(losses)                       # fastai's beta=0.98, bias-corrected
    suggest(learning_rates, smooth)                        # {"valley": 0.0025, "steepest": 0.0006}
    plot_lr_find(read_json("runs/x/20261205-101500/lr_find.json"))

The sweep itself (Keras's fit, a rate per batch, the probe runs) is
`kerakit.training.lr_find`; this module draws what it wrote.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from kerakit.report.figures import figure, message_figure

LR_FIND_IMAGE = "lr_find.png"  # a run folder's (or `kerakit lr-find`'s folder's) picture
BETA = 0.98  # fastai's smoothing of the sweep's loss
_COLORS = {"valley": "tab:green", "steepest": "tab:orange", "default": "tab:gray",
           "configured": "tab:gray"}  # fmt: skip


def smoothed_losses(losses: Sequence[float], beta: float = BETA) -> np.ndarray:
    """The exponential moving average of the losses, bias-corrected (fastai's `smooth_loss`):
    `avg = beta * avg + (1 - beta) * loss; smoothed = avg / (1 - beta ** (i + 1))`."""
    out, avg = [], 0.0
    for i, loss in enumerate(losses):
        avg = beta * avg + (1 - beta) * float(loss)
        out.append(avg / (1 - beta ** (i + 1)))
    return np.asarray(out, dtype=np.float64)


def valley(learning_rates: Sequence[float], losses: Sequence[float]) -> float:
    """fastai's `valley`: the longest run of falling loss (the longest decreasing subsequence
    of the smoothed loss) and the rate fastai picks inside it (half-way down, towards its
    end: start + 1/3 + 1/6 of its length)."""
    n = len(losses)
    longest = [1] * n
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and longest[i] < longest[j] + 1:
                longest[i] = longest[j] + 1
            if longest[end] < longest[i]:
                end = i
                start = end - longest[end]
    third = (end - start) / 3
    return float(learning_rates[max(0, start + int(third) + int(third / 2))])


def steepest(learning_rates: Sequence[float], losses: Sequence[float]) -> float:
    """fastai's `steep`: the rate where the smoothed loss falls fastest per decade of rate
    (the most negative gradient of loss against log learning rate)."""
    lrs, loss = np.log(np.asarray(learning_rates, float)), np.asarray(losses, float)
    grads = np.diff(loss) / np.diff(lrs)
    return float(learning_rates[int(np.argmin(grads))])


def suggest(learning_rates: Sequence[float], smoothed: Sequence[float]) -> dict[str, float]:
    """The candidates of a sweep, {"valley": lr, "steepest": lr}, as fastai reads them: the
    first tenth and the last five points left out (the loss has barely moved, or is blowing
    up), and everything from the first non-finite loss on. {} when too few points are left."""
    lrs, loss = list(learning_rates), _numbers(smoothed)
    bad = [i for i, v in enumerate(loss) if not math.isfinite(v)]
    if bad:
        lrs, loss = lrs[: bad[0]], loss[: bad[0]]
    trimmed = (lrs[len(lrs) // 10 : -5], loss[len(loss) // 10 : -5])
    if len(trimmed[0]) >= 4:
        lrs, loss = trimmed
    if len(lrs) < 3:
        return {}
    return {"valley": round_rate(valley(lrs, loss)), "steepest": round_rate(steepest(lrs, loss))}


def round_rate(lr: float) -> float:
    """A rate to three significant digits: what the probes train with and the recipe keeps."""
    return float(f"{float(lr):.3g}")


def format_lr_find(result: Mapping) -> list[str]:
    """The lines `kerakit lr-find` and `learning_rate: auto` print: the candidates, the probe
    table, and the choice."""
    sweep = result["sweep"]
    lrs = sweep["learning_rates"]
    lines = [
        f"lr_find: swept {sweep['start_lr']:g} -> {lrs[-1] if lrs else sweep['start_lr']:.3g} "
        f"over {len(lrs)} steps ({sweep['stopped']})"
    ]
    measured = result["measured"]
    lines.append(f"  {'candidate':<11}{'learning_rate':>14}{measured:>14}")
    for probe in result["probes"]:
        mark = "  <- chosen" if probe["candidate"] == result["chosen"]["candidate"] else ""
        loss = "diverged" if probe["loss"] is None else f"{probe['loss']:.4g}"
        lines.append(f"  {probe['candidate']:<11}{probe['learning_rate']:>14.3g}{loss:>14}{mark}")
    budget = result["probe_budget"]
    lines.append(
        f"learning_rate: {result['chosen']['learning_rate']:g} ({result['chosen']['candidate']}: "
        f"the lowest {measured} after {budget['steps']} probe steps from the same weights)"
    )
    return lines


def plot_lr_find(result: Mapping) -> Figure:
    """The sweep's loss against the learning rate (log scale), the candidates marked, and
    the probe runs' losses beside it, the chosen one filled.

    Args:
        result: what `kerakit.training.lr_find` writes as lr_find.json (or returns).

    Returns:
        A `matplotlib.figure.Figure`.
    """
    sweep = result.get("sweep") or {}
    lrs, raw = sweep.get("learning_rates") or [], sweep.get("losses") or []
    if not lrs:
        return message_figure("The sweep recorded no steps.")
    raw = _numbers(raw)
    smooth = _numbers(sweep.get("smoothed") or smoothed_losses(raw).tolist())
    fig = figure(10, 3.8)
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(lrs, raw, color="tab:blue", alpha=0.25, linewidth=1, label="loss per batch")
    ax.plot(lrs, smooth, color="tab:blue", linewidth=2, label=f"smoothed (beta={BETA})")
    finite = [v for v in smooth if math.isfinite(v)]
    if finite:  # the blow-up at the end would flatten the part that matters
        low, high = min(finite), max(finite[: max(1, len(finite) * 9 // 10)])
        ax.set_ylim(low - 0.05 * (high - low + 1e-12), high + 0.1 * (high - low + 1e-12))
    for name, lr in (result.get("candidates") or {}).items():
        i = int(np.argmin(np.abs(np.log(np.asarray(lrs)) - math.log(lr))))
        ax.axvline(lr, color=_COLORS.get(name, "black"), linestyle=":", linewidth=1)
        ax.plot([lr], [smooth[i]], "o", color=_COLORS.get(name, "black"), label=f"{name} {lr:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate sweep")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    _plot_probes(fig.add_subplot(1, 2, 2), result)
    return fig


def _plot_probes(ax, result: Mapping) -> None:
    probes = result.get("probes") or []
    chosen = (result.get("chosen") or {}).get("candidate")
    names = [f"{p['candidate']}\n{p['learning_rate']:.3g}" for p in probes]
    losses = _numbers(p["loss"] for p in probes)
    for i, (probe, loss) in enumerate(zip(probes, losses)):
        color = _COLORS.get(probe["candidate"], "black")
        ax.bar(i, 0 if np.isnan(loss) else loss, color=color,
               alpha=1.0 if probe["candidate"] == chosen else 0.35)  # fmt: skip
        ax.annotate("diverged" if np.isnan(loss) else f"{loss:.4g}", (i, 0 if np.isnan(loss) else loss),
                    ha="center", va="bottom", fontsize="small")  # fmt: skip
    ax.set_xticks(range(len(names)), names)
    budget = (result.get("probe_budget") or {}).get("steps")
    ax.set_ylabel(result.get("measured", "loss"))
    ax.set_title(f"probe runs: {budget} steps each, same start" if budget else "probe runs")
    ax.grid(True, axis="y", alpha=0.3)


def _numbers(values) -> list[float]:
    """Floats, with JSON's null (a loss that was not finite) as NaN."""
    return [math.nan if v is None else float(v) for v in values]
