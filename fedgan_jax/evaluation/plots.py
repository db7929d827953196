"""Figures of a run (paper Figs. 4-8) and of a sweep; matplotlib, written atomically.

* `accuracy_curve`: main-task accuracy per round (Fig. 5), with the generator's start.
* `reconstructions`: generated samples per class at several rounds beside real ones (Fig. 4).
* `roc_curves`: every attack, linear and log-log axes, per protocol (Figs. 7-8).
* `tp_fn_bars`: TP / FN (and FP) per attack, per protocol (Fig. 6).
* Sweeps: `tp_fn_by_k` (Fig. 6 over k, means over seeds with 95% t-interval error bars)
  and `roc_by_k` (Figs. 7-8 over k, seeds pooled into one curve).
* `privacy_utility_attack`: a DP sweep's accuracy and TPR at 1% FPR against epsilon, with
  the (epsilon, delta)-DP bound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fedgan_jax.core import io
from fedgan_jax.data.datasets import denormalize  # noqa: E402
from fedgan_jax.evaluation import (
    intervals,
    metrics,  # noqa: E402
)

ATTACK_STYLE = {
    "gan": dict(color="tab:red", label="gan (paper)"),
    "global_model": dict(color="tab:blue", label="global model"),
    "oracle": dict(color="tab:green", label="oracle (upper bound)"),
    "loss_threshold": dict(color="tab:purple", label="loss threshold"),
}


def _style(attack: str) -> dict:
    return ATTACK_STYLE.get(attack, dict(label=attack))


def accuracy_curve(
    path: str,
    curves: Mapping[str, np.ndarray],
    *,
    gan_start=None,
    trigger=None,
    title="Main-task accuracy (paper Fig. 5)",
) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, acc in curves.items():
        ax.plot(np.arange(1, len(acc) + 1), acc, label=name)
    if trigger is not None:
        ax.axhline(trigger, color="gray", ls=":", lw=1, label=f"GAN trigger {trigger:.2f}")
    if gan_start:
        ax.axvline(
            gan_start, color="tab:red", ls="--", lw=1, label=f"GAN starts (round {gan_start})"
        )
    ax.set(xlabel="round", ylabel="test accuracy", title=title, ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    io.save_figure(fig, path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _grid_image(grid: np.ndarray) -> np.ndarray:
    """[classes, n, H, W, C] in [-1, 1] -> one [classes*H, n*W, C] image in [0, 1]."""
    c, n, h, w, ch = grid.shape
    img = denormalize(grid).transpose(0, 2, 1, 3, 4).reshape(c * h, n * w, ch)
    return img[..., 0] if ch == 1 else img


def reconstructions(
    path: str,
    panels: Sequence[tuple[str, np.ndarray]],
    title="Reconstructions per class (paper Fig. 4)",
) -> None:
    """`panels`: (caption, grid[classes, n, H, W, C]) in order, real samples last."""
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 4.2), squeeze=False)
    for ax, (caption, grid) in zip(axes[0], panels, strict=True):
        ax.imshow(_grid_image(grid), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(caption, fontsize=9)
        ax.set_xticks([])
        h = grid.shape[2]
        ax.set_yticks(np.arange(grid.shape[0]) * h + h / 2, [str(i) for i in range(grid.shape[0])])
        ax.tick_params(length=0, labelsize=7)
    fig.suptitle(title, fontsize=10)
    io.save_figure(fig, path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def roc_curves(
    path: str,
    curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
    title="ROC (paper Figs. 7-8)",
) -> None:
    """`curves[protocol][label] = (is_member, scores)`; linear and log-log columns."""
    protocols = list(curves)
    fig, axes = plt.subplots(
        len(protocols), 2, figsize=(10, 4.2 * len(protocols)), squeeze=False, layout="constrained"
    )
    for row, protocol in zip(axes, protocols, strict=True):
        for label, (is_member, scores) in curves[protocol].items():
            fpr, tpr, _ = metrics.roc_curve(is_member, scores)
            area = metrics.auc(fpr, tpr)
            style = {**_style(label), "label": f"{_style(label)['label']} (AUC {area:.3f})"}
            row[0].plot(fpr, tpr, **style)
            n_neg = int((~np.asarray(is_member, bool)).sum())
            floor = 0.5 / max(n_neg, 1)  # plot FPR = 0 at half the smallest step
            row[1].plot(np.maximum(fpr, floor), np.maximum(tpr, floor), **style)
        for ax, scale in zip(row, ("linear", "log"), strict=True):
            ax.plot([0, 1], [0, 1], color="gray", ls=":", lw=1)
            ax.set(
                xscale=scale,
                yscale=scale,
                xlabel="false positive rate",
                ylabel="true positive rate",
                title=f"{protocol} protocol ({scale})",
            )
            ax.grid(alpha=0.3)
        row[1].set(xlim=(1e-4 if n_neg > 5000 else 1e-3, 1), ylim=(1e-3, 1.05))
        row[0].legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    io.save_figure(fig, path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def tp_fn_bars(
    path: str,
    results: Mapping[str, Mapping[str, Mapping]],
    title="Inference outcomes (paper Fig. 6)",
) -> None:
    """`results[attack][protocol]` metric dicts: TP, FN (paper) and FP bars."""
    attacks = list(results)
    protocols = list(next(iter(results.values())))
    fig, axes = plt.subplots(1, len(protocols), figsize=(5.5 * len(protocols), 4), squeeze=False)
    width = 0.27
    x = np.arange(len(attacks))
    for ax, protocol in zip(axes[0], protocols, strict=True):
        for i, (key, color) in enumerate(
            (("tp", "tab:green"), ("fn", "tab:orange"), ("fp", "tab:red"))
        ):
            values = [results[a][protocol][key] for a in attacks]
            ax.bar(x + (i - 1) * width, values, width, color=color, label=key.upper())
        ax.set_xticks(x, [_style(a)["label"] for a in attacks], rotation=20, fontsize=8)
        ax.set(ylabel="records", title=f"{protocol} protocol")
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    io.save_figure(fig, path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def tp_fn_by_k(
    path: str,
    results: Mapping[str, Mapping[str, Mapping[int, Sequence[Mapping]]]],
    title="Inference outcomes by victim label count k (paper Fig. 6)",
) -> None:
    """`results[attack][protocol][k]` = per-seed metric dicts; bars: the mean over seeds,
    error bars: its 95% t-interval half-width (`fedgan_jax.evaluation.intervals`; none for one
    seed)."""
    attacks = list(results)
    protocols = list(next(iter(results.values())))
    fig, axes = plt.subplots(
        len(protocols),
        len(attacks),
        figsize=(3.6 * len(attacks), 3.3 * len(protocols)),
        squeeze=False,
    )
    width = 0.27
    for row, protocol in zip(axes, protocols, strict=True):
        for ax, attack in zip(row, attacks, strict=True):
            per_k = results[attack][protocol]
            ks = [k for k in per_k if per_k[k]]
            x = np.arange(len(ks))
            ax.set_title(f"{_style(attack)['label']}, {protocol}", fontsize=9)
            if not ks:  # e.g. the gan attack where no generator started
                ax.text(0.5, 0.5, "no run scored", ha="center", transform=ax.transAxes)
                continue
            for i, (key, color) in enumerate(
                (("tp", "tab:green"), ("fn", "tab:orange"), ("fp", "tab:red"))
            ):
                means, _, half = zip(
                    *(intervals.mean_std_ci95(m[key] for m in per_k[k]) for k in ks), strict=True
                )
                ax.bar(
                    x + (i - 1) * width,
                    means,
                    width,
                    yerr=[np.nan if h is None else h for h in half],
                    color=color,
                    label=key.upper(),
                    capsize=2,
                )
            ax.set_xticks(x, [f"k={k}" for k in ks])
            ax.grid(axis="y", alpha=0.3)
        row[0].set_ylabel("records (mean, 95% t-interval)")
    scored = [ax for ax in axes.flat if ax.get_legend_handles_labels()[0]]
    if scored:  # the key on the first panel with bars (the first may have no run scored)
        scored[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    io.save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def roc_by_k(
    path: str,
    curves: Mapping[str, Mapping[str, Mapping[int, tuple]]],
    title="ROC by victim label count k, seeds pooled (paper Figs. 7-8)",
) -> None:
    """`curves[protocol][attack][k] = (is_member, scores)`: rows protocol x (linear, log)."""
    protocols = list(curves)
    attacks = list(next(iter(curves.values())))
    fig, axes = plt.subplots(
        2 * len(protocols),
        len(attacks),
        figsize=(3.6 * len(attacks), 3.4 * 2 * len(protocols)),
        squeeze=False,
    )
    colors = plt.get_cmap("viridis")
    for p_i, protocol in enumerate(protocols):
        for a_i, attack in enumerate(attacks):
            per_k = curves[protocol][attack]
            for k_i, (k, (truth, scores)) in enumerate(sorted(per_k.items())):
                fpr, tpr, _ = metrics.roc_curve(truth, scores)
                color = colors(k_i / max(len(per_k) - 1, 1))
                label = f"k={k} (AUC {metrics.auc(fpr, tpr):.3f})"
                floor = 0.5 / max(int((~np.asarray(truth, bool)).sum()), 1)
                axes[2 * p_i, a_i].plot(fpr, tpr, color=color, label=label)
                axes[2 * p_i + 1, a_i].plot(
                    np.maximum(fpr, floor), np.maximum(tpr, floor), color=color
                )
            for scale, ax in zip(("linear", "log"), axes[2 * p_i : 2 * p_i + 2, a_i], strict=True):
                ax.plot([0, 1], [0, 1], color="gray", ls=":", lw=1)
                ax.set(xscale=scale, yscale=scale)
                if scale == "log":
                    ax.set(xlim=(1e-3, 1), ylim=(1e-3, 1.05))
                ax.set_title(f"{_style(attack)['label']}, {protocol} ({scale})", fontsize=9)
                ax.grid(alpha=0.3)
            if per_k:  # an attack no run scored keeps its panels, without a key
                axes[2 * p_i, a_i].legend(fontsize=7, loc="lower right")
    for ax in axes[-1]:
        ax.set_xlabel("false positive rate")
    for ax in axes[:, 0]:
        ax.set_ylabel("true positive rate")
    fig.suptitle(title)
    fig.tight_layout()
    io.save_figure(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def generator_trajectories(path: str, probes: Mapping[str, list[dict]], *, global_accuracy=None):
    """studies/selection_probe.py's rows of one or more runs against the round: the
    attack classifier's real accuracy from each checked generator, the adversary's own-class
    MMD, and how the oracle reads the victim's classes (as the victim's, as its own)."""
    panels = (
        ("attack_accuracy", "attack classifier accuracy (real test)"),
        ("pixel_mmd", "own-class MMD (pixels; the adversary's score)"),
        ("oracle_reads_victim", "victim's classes: oracle reads the asked class"),
        ("victim_read_as_own", "victim's classes: oracle reads an own class"),
    )
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for ax, (field, title) in zip(axes.flat, panels, strict=True):
        for label, rows in probes.items():
            ax.plot([r["round"] for r in rows], [r[field] for r in rows], label=label)
        if field == "attack_accuracy" and global_accuracy:
            ax.axhline(0.9 * global_accuracy, color="gray", ls=":", lw=1, label="0.9x global")
        ax.set(title=title, xlabel="round (generator checked)")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)
    io.save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def privacy_utility_attack(rows: Sequence[Mapping], path: str, *, fpr: float = 0.01) -> None:
    """A DP sweep (`fedgan_jax.driver.run_tables.privacy_rows`): main-task accuracy (left)
    and each attack's TPR at `fpr` (right) against epsilon, with the (epsilon, delta)-DP
    bound on any membership test, TPR <= e^epsilon x FPR + delta (Kairouz et al. 2015).
    Settings without a finite epsilon sit at the right edge, marked "none"; error bars are
    the 95% t half-widths (none for one seed)."""
    finite = [r["epsilon"] for r in rows if r["epsilon"] is not None]
    edge = 2 * max(finite) if finite else 1.0
    x = np.array([edge if r["epsilon"] is None else r["epsilon"] for r in rows])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    acc = np.array([r["accuracy"] for r in rows], float)  # None (one seed): no error bar
    left.errorbar(x, acc[:, 0], acc[:, 2], marker="o")
    left.set(xlabel="epsilon", ylabel="main-task accuracy (95% t-interval)", xscale="log")
    fixed = ("setting", "seeds", "epsilon", "delta", "accuracy")
    for attack in [k for k in rows[0] if k not in fixed]:
        v = np.array([r.get(attack, (np.nan,) * 3) for r in rows], float)
        right.errorbar(x, v[:, 0], v[:, 2], marker="o", label=attack)
    grid = np.geomspace(min(x) / 2, edge, 200)
    bound = np.minimum(1.0, np.exp(grid) * fpr + rows[0]["delta"])
    right.plot(grid, bound, "k--", label="DP bound")
    right.set(xlabel="epsilon", ylabel=f"TPR at {fpr:.0%} FPR", xscale="log", ylim=(0, 1.05))
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.axvline(edge, color="grey", lw=0.5)
        ax.annotate("none", (edge, 0.02), xycoords=("data", "axes fraction"), fontsize=8)
    fig.tight_layout()
    io.save_figure(fig, path, dpi=120)
    plt.close(fig)
