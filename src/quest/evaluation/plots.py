"""Pictures people would rather look at than read: each function draws one figure to a PNG path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from quest.core.files import atomic_path  # noqa: E402

# Fixed metadata keeps PNG bytes identical between identical runs (matplotlib stamps its version otherwise).
_PNG_METADATA = {"Software": None}


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    with atomic_path(path) as staging:
        figure.savefig(staging, format="png", dpi=110, metadata=_PNG_METADATA)
    plt.close(figure)


def confusion_matrix(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str) -> None:
    size = max(4.0, 0.6 * len(labels) + 2.5)
    figure, axes = plt.subplots(figsize=(size, size * 0.85))
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("actual")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), count in np.ndenumerate(matrix):
        axes.text(column, row, str(count), ha="center", va="center", color="white" if count > threshold else "black")
    axes.set_title(title)
    _save(figure, path)


def curves(
    lines: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    diagonal: bool = False,
) -> None:
    """ROC or precision-recall: one line per class (or one for a binary problem), AUC in the legend labels."""
    figure, axes = plt.subplots(figsize=(5.5, 4.5))
    for label, (x, y) in lines.items():
        axes.plot(x, y, label=label, linewidth=1.6)
    if diagonal:
        axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title, xlim=(0, 1), ylim=(0, 1.02))
    axes.legend(loc="lower right" if diagonal else "lower left", fontsize=8)
    axes.grid(alpha=0.3)
    _save(figure, path)


def residuals(actual: np.ndarray, predicted: np.ndarray, path: Path, title: str) -> None:
    """Predicted vs actual (left) and residuals vs predicted (right)."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    left.scatter(actual, predicted, s=10, alpha=0.6)
    left.plot([low, high], [low, high], linestyle="--", color="grey", linewidth=0.8)
    left.set(xlabel="actual", ylabel="predicted", title=f"{title}: predicted vs actual")
    right.scatter(predicted, actual - predicted, s=10, alpha=0.6)
    right.axhline(0.0, linestyle="--", color="grey", linewidth=0.8)
    right.set(xlabel="predicted", ylabel="actual - predicted", title=f"{title}: residuals")
    for axes in (left, right):
        axes.grid(alpha=0.3)
    _save(figure, path)


def training_curves(history: Mapping[str, Sequence[float]], best_epoch: int, path: Path) -> None:
    """Loss (left) and the compiled metric (right), train vs validation, with the restored epoch marked."""
    names = [name for name in history if not name.startswith("val_")]
    figure, panels = plt.subplots(1, len(names), figsize=(5 * len(names), 3.8), squeeze=False)
    for axes, name in zip(panels[0], sorted(names, key=lambda n: n != "loss"), strict=True):
        epochs = np.arange(1, len(history[name]) + 1)
        axes.plot(epochs, history[name], label="train")
        if f"val_{name}" in history:
            axes.plot(epochs, history[f"val_{name}"], label="validation")
        axes.axvline(best_epoch, linestyle="--", color="grey", linewidth=0.8, label=f"best epoch {best_epoch}")
        axes.set(xlabel="epoch", ylabel=name, title=f"MLP {name}")
        axes.legend(fontsize=8)
        axes.grid(alpha=0.3)
    _save(figure, path)


FAMILY_COLOURS = {"neural": "tab:orange", "classic": "tab:blue"}


def posterior(
    *,
    mean: float,
    scale: float,
    df: int,
    rope: float,
    probabilities: tuple[float, float, float],
    names: tuple[str, str],
    metric: str,
    path: Path,
) -> None:
    """The posterior of the mean difference (neural minus classic, > 0: the neural side is better) with the
    region of practical equivalence shaded, and the mass worse than, within and better than it."""
    better, equivalent, worse = probabilities
    neural, classic = names
    figure, axes = plt.subplots(figsize=(8.0, 4.2))
    reach = max(4.5 * scale, 1.6 * rope, 1e-6) if np.isfinite(scale) else max(1.6 * rope, 1e-6)
    low, high = min(mean - reach, -1.3 * rope), max(mean + reach, 1.3 * rope)  # zero and the ROPE always shown
    x = np.union1d(np.linspace(low, high, 801), [-rope, rope])
    axes.axvspan(-rope, rope, color="0.85", zorder=0, label=f"ROPE ±{rope:.3g}: equivalent, P = {equivalent:.3f}")
    if scale > 0:
        from scipy import stats

        y = stats.t.pdf(x, df, loc=mean, scale=scale)
        axes.plot(x, y, color="black", linewidth=1.2)
        axes.fill_between(
            x, y, where=x >= rope, color="tab:green", alpha=0.5, label=f"{neural} better, P = {better:.3f}"
        )
        axes.fill_between(x, y, where=x <= -rope, color="tab:red", alpha=0.5, label=f"{neural} worse, P = {worse:.3f}")
    else:  # the same difference on every split: all the mass in one place
        axes.axvline(mean, color="black", linewidth=2, label=f"every split: {mean:+.4g}, P(better) = {better:.3f}")
    axes.axvline(0.0, color="0.4", linewidth=0.8, linestyle=":")
    axes.set_xlim(low, high)
    axes.set_ylim(bottom=0)
    axes.set_xlabel(f"{metric}: {neural} minus {classic} (> 0: {neural} better)")
    axes.set_ylabel("posterior density")
    axes.set_title(f"Best neural ({neural}) vs best classic ({classic}): posterior of the difference", fontsize=11)
    axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    _save(figure, path)


def comparison_bars(
    models: Sequence[str],
    cv_mean: Sequence[float],
    ci_low: Sequence[float],
    ci_high: Sequence[float],
    test_score: Sequence[float],
    *,
    families: Sequence[str],
    metric: str,
    path: Path,
) -> None:
    """CV mean with its 95% interval (bars with error bars, neural entrants orange, classic ones blue) and the
    held-out test score (dots), per model."""
    positions = np.arange(len(models))
    mean, low, high = (np.asarray(values, dtype=float) for values in (cv_mean, ci_low, ci_high))
    figure, axes = plt.subplots(figsize=(max(7.0, 0.85 * len(models) + 2), 4.5))
    colours = [FAMILY_COLOURS[family] for family in families]
    errors = np.nan_to_num(np.vstack([mean - low, high - mean]))
    axes.bar(positions, mean, yerr=errors, capsize=4, color=colours, alpha=0.85)  # in the legend by family
    axes.scatter(positions, test_score, color="black", zorder=3, marker="D", s=24, label="test")
    axes.set_xticks(positions, models, rotation=30, ha="right")
    values = np.concatenate([low, np.asarray(test_score)])
    finite = values[np.isfinite(values)]
    if finite.size and metric in {"accuracy", "balanced_accuracy", "f1", "roc_auc"}:
        axes.set_ylim(max(0.0, float(finite.min()) - 0.05), 1.0)
    axes.set_ylabel(metric)
    axes.set_title(f"quest: neural vs classic models ({metric}, same folds)")
    handles, labels = axes.get_legend_handles_labels()
    present = set(families)  # the values: `in` on a pandas Series would look at its index
    shown = [family for family in FAMILY_COLOURS if family in present]
    handles += [Patch(color=FAMILY_COLOURS[family], alpha=0.85) for family in shown]
    labels += [f"{family}: CV mean, 95% interval" for family in shown]
    axes.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.grid(axis="y", alpha=0.3)
    _save(figure, path)


def learning_curves(table, *, metric: str, path: Path) -> None:
    """Mean score (with a ±1 std band) against training rows, one line per model, the MLP emphasised."""
    figure, axes = plt.subplots(figsize=(8, 4.8))
    palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 1] + ["black", "gold", "navy"]
    others = iter(palette * 2)  # orange is the MLP's
    for name, rows in table.groupby("model", sort=False):
        rows = rows.sort_values("n_train")
        x, mean, std = rows["n_train"].to_numpy(), rows["mean"].to_numpy(), rows["std"].to_numpy()
        mlp = name == "mlp"
        colour = "tab:orange" if mlp else next(others)
        axes.plot(
            x,
            mean,
            marker="o",
            markersize=3,
            label=name,
            color=colour,
            linewidth=3.0 if mlp else 1.2,
            zorder=4 if mlp else 2,
        )
        axes.fill_between(x, mean - std, mean + std, color=colour, alpha=0.15 if mlp else 0.04)
    sizes = sorted(table["n_train"].unique())
    axes.set_xscale("log")
    axes.set_xticks(sizes, [str(int(size)) for size in sizes])
    axes.minorticks_off()
    axes.set(xlabel="training rows (log scale)", ylabel=metric, title=f"Learning curves ({metric}, same folds)")
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.grid(alpha=0.3)
    _save(figure, path)


def budget_curves(curves: Mapping[str, Sequence[float]], *, metric: str, path: Path) -> None:
    """Test score of the best-by-validation trial so far against trials spent, one line per model, the MLP
    emphasised: the tabular benchmark's picture of what an equal tuning budget buys each model."""
    figure, axes = plt.subplots(figsize=(8, 4.8))
    palette = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 1] + ["black", "gold", "navy"]
    others = iter(palette * 2)  # orange is the MLP's
    for name, curve in curves.items():
        mlp = name == "mlp"
        values = np.asarray(curve, dtype=float)
        axes.plot(
            np.arange(1, len(values) + 1),
            values,
            drawstyle="steps-post",  # the best so far holds until a better trial by validation arrives
            marker="o",
            markersize=3,
            label=name,
            color="tab:orange" if mlp else next(others),
            linewidth=3.0 if mlp else 1.2,
            zorder=4 if mlp else 2,
        )
    axes.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axes.set(
        xlabel="trials (random search)",
        ylabel=f"test {metric}",
        title=f"Equal-budget tuning: test {metric} of the best trial by validation",
    )
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes.grid(alpha=0.3)
    _save(figure, path)


def critical_difference(ranks, pvalues, *, tables: int, path: Path, alpha: float = 0.05) -> None:
    """The critical-difference diagram across tables: each model at its average rank (a Series), those that no
    pairwise test at `alpha` tells apart (`pvalues`, models x models) joined by a bar; scikit-posthocs draws it."""
    import scikit_posthocs

    figure, axes = plt.subplots(figsize=(8, 0.35 * len(ranks) + 1.2))
    scikit_posthocs.critical_difference_diagram(ranks, pvalues, ax=axes, alpha=alpha)
    axes.set_title(f"Average rank over {tables} tables (1 = best); a bar: no difference shown")
    _save(figure, path)


def network_against_trees(points, path: Path) -> None:
    """The lecture's figure for a suite: a point per table (`points`: trees, networks, rows), its best network's
    rescaled score against its best tree ensemble's, sized by its rows; above the diagonal the networks did
    better."""
    figure, axes = plt.subplots(figsize=(5.5, 5.5))
    sizes = 20 + 180 * (points["rows"] / points["rows"].max()) ** 0.5
    axes.scatter(points["trees"], points["networks"], s=sizes, alpha=0.6, color="tab:blue", edgecolor="black")
    for table, point in points.iterrows():
        axes.annotate(str(table), (point["trees"], point["networks"]), fontsize=7, xytext=(4, 3),
                      textcoords="offset points")  # fmt: skip
    # Both axes over the points' range (each table's worst model, often the single tree, sits far below them).
    low = max(0.0, min(points["trees"].min(), points["networks"].min()) - 0.05)
    axes.plot([low, 1], [low, 1], color="grey", linestyle="--", linewidth=1)
    axes.set(xlim=(low, 1.02), ylim=(low, 1.02), xlabel="best tree ensemble (rescaled score)",
             ylabel="best network (rescaled score)", title="Networks against trees, a point per table")  # fmt: skip
    _save(figure, path)
