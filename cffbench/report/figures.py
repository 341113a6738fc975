"""The report's figures: seaborn on one colour-blind-safe theme, saved as SVG and PNG.

Every builder returns a :class:`Figure` (or None when the data for it is absent) whose ``svg`` is
inlined into the HTML; ``figures/<key>.svg`` and ``figures/<key>.png`` are written beside it.
Text stays text in the SVG (``svg.fonttype = "none"``), which keeps the files small.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from cffbench import fmt  # noqa: E402
from cffbench.analysis.verdicts import smallest_decisive_n  # noqa: E402
from cffbench.report.store import json_list  # noqa: E402
from cffbench.report.tables import (ABLATION_AXES, VARIANT_LABEL, ordered_variants,  # noqa: E402
                                    varying_axes)
from cffbench.stats.descriptives import mean_ci  # noqa: E402

#: Curves are thinned to at most this many epochs per line: the SVG stays small and fast to print.
MAX_CURVE_POINTS = 120
PNG_DPI = 120

THEME_RC = {
    "svg.fonttype": "none", "svg.hashsalt": "cffbench", "font.family": "DejaVu Sans",
    "figure.dpi": 100, "savefig.bbox": "tight", "axes.titlesize": 10, "axes.labelsize": 9,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8,
}
_PALETTE = sns.color_palette("colorblind", 10)
VARIANT_COLOUR = {"ff": _PALETTE[0], "f-cff": _PALETTE[1], "a-cff": _PALETTE[2], "bp": _PALETTE[7]}


@dataclass
class Figure:
    """One rendered figure: ``svg`` is inline-ready markup (no XML prolog, ids made unique)."""

    key: str
    caption: str
    svg: str
    svg_path: Path
    png_path: Path


def variant_colour(variant: str):
    return VARIANT_COLOUR.get(variant, _PALETTE[5])


def _theme():
    return sns.axes_style("whitegrid") | THEME_RC


def _legend_right(ax) -> None:
    """One legend outside the right edge, so it never covers data."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, borderaxespad=0)


def _inline_svg(svg_text: str, key: str) -> str:
    """Strip the XML prolog and prefix every id so several figures can share one page."""
    svg_text = svg_text[svg_text.index("<svg"):]
    prefix = re.sub(r"[^A-Za-z0-9]", "-", key) + "-"
    svg_text = re.sub(r'\bid="', f'id="{prefix}', svg_text)
    svg_text = re.sub(r'url\(#', f'url(#{prefix}', svg_text)
    return re.sub(r'href="#', f'href="#{prefix}', svg_text)


def _save(fig, key: str, caption: str, out_dir: Path) -> Figure:
    out_dir.mkdir(parents=True, exist_ok=True)
    svg_path, png_path = out_dir / f"{key}.svg", out_dir / f"{key}.png"
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    svg_text = buffer.getvalue()
    svg_path.write_text(svg_text, encoding="utf-8")
    fig.savefig(png_path, format="png", dpi=PNG_DPI)
    plt.close(fig)
    return Figure(key, caption, _inline_svg(svg_text, key), svg_path, png_path)


def accuracy_distribution(runs: pd.DataFrame, out_dir: Path, where: str = "") -> Figure | None:
    """Box plot of test accuracy per variant, one panel per dataset, with grey lines joining the
    runs that share a seed (the pairing the repeated-measures tests use); ``runs`` one condition
    per variant, named by ``where``."""
    runs = runs.dropna(subset=["test_acc"])
    if runs.empty:
        return None
    datasets = list(dict.fromkeys(runs["dataset"]))
    with plt.rc_context(_theme()):
        fig, axes = plt.subplots(1, len(datasets), figsize=(3.4 * len(datasets) + 0.6, 3.2),
                                 squeeze=False)
        for ax, dataset in zip(axes[0], datasets):
            data = runs[runs["dataset"] == dataset].assign(acc_pct=lambda d: 100 * d["test_acc"])
            order = ordered_variants(data["variant"])
            palette = {v: variant_colour(v) for v in order}
            with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib's deprecated `vert`
                warnings.simplefilter("ignore", matplotlib.MatplotlibDeprecationWarning)
                sns.boxplot(data=data, x="variant", y="acc_pct", hue="variant", order=order,
                            hue_order=order, palette=palette, ax=ax, width=0.55, fliersize=0,
                            boxprops={"alpha": 0.55}, legend=False)
            pos = {v: i for i, v in enumerate(order)}
            for _, seed_runs in data.groupby("seed"):
                seed_runs = seed_runs.assign(x=seed_runs["variant"].map(pos)).sort_values("x")
                ax.plot(seed_runs["x"], seed_runs["acc_pct"], color="0.45", lw=0.7, alpha=0.7,
                        marker="o", ms=3, zorder=3)
            ax.set_xticks(range(len(order)), [VARIANT_LABEL.get(v, v) for v in order])
            ax.set(title=dataset, xlabel="variant", ylabel="test accuracy [%]")
        fig.tight_layout()
        at = f", at {where}" if where else ""
        return _save(fig, "accuracy_distribution",
                     f"Test accuracy per variant (boxes) with each seed's runs joined by a line{at}.",
                     out_dir)


def _mean_band(frame: pd.DataFrame, value: str) -> pd.DataFrame:
    """Mean and t-based 95 % CI over seeds per (variant, epoch) of the training curves (which the
    saved analysis does not summarise: they are drawn, never tested)."""
    desc = mean_ci(frame, ["variant", "epoch"], value)
    return desc.sort_values("epoch")


def _thin(curves: pd.DataFrame) -> pd.DataFrame:
    epochs = np.sort(curves["epoch"].unique())
    if len(epochs) <= MAX_CURVE_POINTS:
        return curves
    keep = set(epochs[np.linspace(0, len(epochs) - 1, MAX_CURVE_POINTS).round().astype(int)])
    return curves[curves["epoch"].isin(keep)]


def condition_label(levels: dict) -> str:
    """``θ placement = single, α structure = learned``: axis levels in the report's names."""
    return ", ".join(f"{ABLATION_AXES.get(axis, axis)} = {level}" for axis, level in levels.items())


def level_slug(levels: dict) -> str:
    """A file-name part for axis levels: ``_theta_placement-single``; a level with characters
    outside ``[A-Za-z0-9_-]`` has them replaced and a short digest of its text appended, so two
    levels never share a file name (``per term`` and ``per-term``)."""
    def part(level) -> str:
        text = str(level)
        safe = re.sub(r"[^A-Za-z0-9_-]", "-", text)
        return safe if safe == text else f"{safe}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"
    return "".join(f"_{axis}-{part(level)}" for axis, level in levels.items())


def training_curves(curves: pd.DataFrame, runs: pd.DataFrame, out_dir: Path,
                    where: str = "", key_suffix: str = "") -> list[Figure]:
    """Per dataset: loss and goodness separation ``g_pos − g_neg`` per layer vs epoch, the mean
    over seeds with a 95 % CI band, one line per variant. ``runs`` must hold one condition per
    variant (the report passes one configuration of the varying axes, named by ``where``), so a
    band never mixes conditions."""
    needed = {"run_id", "layer", "epoch", "loss", "g_pos", "g_neg"}
    if curves.empty or not needed <= set(curves.columns):
        return []
    data = _thin(curves.merge(runs[["run_id", "dataset", "variant", "seed"]], on="run_id"))
    data = data.assign(separation=data["g_pos"] - data["g_neg"])
    figures = []
    for dataset in dict.fromkeys(runs.loc[runs["run_id"].isin(data["run_id"]), "dataset"]):
        ds = data[data["dataset"] == dataset]
        layers = sorted(ds["layer"].unique())
        with plt.rc_context(_theme()):
            fig, axes = plt.subplots(2, len(layers), figsize=(3.0 * len(layers) + 0.8, 4.6),
                                     squeeze=False, sharex="col")
            handles = {}
            for j, layer in enumerate(layers):
                in_layer = ds[ds["layer"] == layer]
                only_bp = set(in_layer["variant"]) == {"bp"}
                for i, (value, label) in enumerate([("loss", "loss"),
                                                     ("separation", "g_pos − g_neg")]):
                    ax = axes[i][j]
                    band = _mean_band(in_layer.dropna(subset=[value]), value)
                    for variant in ordered_variants(band["variant"]):
                        b = band[band["variant"] == variant]
                        colour = variant_colour(variant)
                        handles[variant], = ax.plot(b["epoch"], b["mean"], color=colour, lw=1.2,
                                                    label=VARIANT_LABEL.get(variant, variant))
                        ax.fill_between(b["epoch"], b["ci_low"], b["ci_high"], color=colour,
                                        alpha=0.2, lw=0)
                    if band.empty:  # e.g. backprop records no goodness: say so, never blank
                        ax.text(0.5, 0.5, f"{label}\nnot recorded", ha="center", va="center",
                                transform=ax.transAxes, color="0.4", fontsize=8)
                        ax.set_yticks([])
                    title = "BP (whole network)" if only_bp else f"layer {layer}"
                    ax.set(title=title if i == 0 else "", ylabel=label,
                           xlabel="epoch" if i == 1 else "")
            order = ordered_variants(handles)
            axes[0][-1].legend([handles[v] for v in order],
                               [VARIANT_LABEL.get(v, v) for v in order], loc="upper left",
                               bbox_to_anchor=(1.02, 1.0), frameon=False, borderaxespad=0)
            fig.suptitle(dataset, fontsize=10)
            fig.tight_layout()
            at = f", at {where}" if where else ""
            figures.append(_save(fig, f"curves_{dataset}{key_suffix}",
                                 f"{dataset}: training loss and goodness separation per layer "
                                 f"(mean over seeds, 95 % CI band){at}.", out_dir))
    return figures


def gamma_bands(curves: pd.DataFrame, runs: pd.DataFrame) -> list[tuple[str, dict, pd.DataFrame]]:
    """A-CFF's learned γ per layer and epoch, mean over seeds with a t-based 95 % CI, one panel
    per dataset and condition: ``[(dataset, levels, band)]``, ``levels`` the values of the axes
    that vary among the A-CFF runs (e.g. ``{"theta_placement": "single"}``), ``band`` columns
    ``layer, epoch, n, mean, std, ci_low, ci_high``. Conditions are never pooled: γ follows
    another course under each θ placement or α structure."""
    acff = runs[runs["variant"] == "a-cff"]
    if curves.empty or acff.empty or "gamma" not in curves.columns:
        return []
    axes = list(varying_axes(acff))
    # the axes under their own names: a curve column may share one (γ itself as a grid axis)
    named = {axis: f"axis:{axis}" for axis in axes}
    levels_of = acff[["run_id", "dataset", *axes]].rename(columns=named)
    data = curves.merge(levels_of, on="run_id").dropna(subset=["gamma"])
    if data.empty:
        return []
    data = _thin(data)
    panels = []
    for dataset in dict.fromkeys(acff["dataset"]):
        in_dataset = data[data["dataset"] == dataset]
        groups = (in_dataset.groupby([named[a] for a in axes], sort=True, dropna=False) if axes
                  else [((), in_dataset)])
        for keys, group in groups:
            if group.empty:
                continue
            keys = keys if isinstance(keys, tuple) else (keys,)
            # a level a run does not set (NaN: e.g. alpha_decay off α = distance) is not named
            levels = {a: k for a, k in zip(axes, keys) if not pd.isna(k)}
            band = mean_ci(group, ["layer", "epoch"], "gamma").sort_values(["layer", "epoch"])
            panels.append((dataset, levels, band.reset_index(drop=True)))
    return panels


#: Panels per row of the γ figure.
GAMMA_COLUMNS = 4


def gamma_trajectories(curves: pd.DataFrame, runs: pd.DataFrame, out_dir: Path) -> Figure | None:
    """A-CFF's learned γ per layer vs epoch (:func:`gamma_bands`), one panel per dataset and
    condition."""
    panels = gamma_bands(curves, runs)
    if not panels:
        return None
    per_dataset: dict[str, list] = {}
    for panel in panels:
        per_dataset.setdefault(panel[0], []).append(panel)
    n_cols = min(max(len(p) for p in per_dataset.values()), GAMMA_COLUMNS)
    grid = [row[i:i + n_cols] for row in per_dataset.values() for i in range(0, len(row), n_cols)]
    n_rows = len(grid)   # each dataset starts a row
    with plt.rc_context(_theme()):
        fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.4 * n_cols + 0.6, 2.8 * n_rows),
                                 squeeze=False)
        for index in range(n_rows * n_cols):
            if index % n_cols >= len(grid[index // n_cols]):
                axes[index // n_cols][index % n_cols].set_visible(False)
        handles: dict = {}
        for r, row in enumerate(grid):
            for c, (dataset, levels, band) in enumerate(row):
                handles.update(_gamma_panel(axes[r][c], dataset, levels, band))
        axes[0][len(grid[0]) - 1].legend(   # every panel's layers, beside the first row
            [handles[k] for k in sorted(handles)], [f"layer {k}" for k in sorted(handles)],
            loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, borderaxespad=0)
        fig.tight_layout()
        axes_named = sorted({ABLATION_AXES.get(a, a) for _, levels, _ in panels for a in levels})
        per = f", one panel per dataset × {' × '.join(axes_named)}" if axes_named else ""
        return _save(fig, "gamma_trajectories",
                     f"A-CFF: learned γ per layer during training (mean over seeds, 95 % CI){per}.",
                     out_dir)


def _gamma_panel(ax, dataset: str, levels: dict, band: pd.DataFrame) -> dict:
    """One panel; returns its line per layer (one colour per layer in every panel)."""
    lines = {}
    for layer, b in band.groupby("layer", sort=True):
        colour = _PALETTE[(int(layer) - 1) % 10]
        lines[int(layer)], = ax.plot(b["epoch"], b["mean"], color=colour, lw=1.2)
        ax.fill_between(b["epoch"], b["ci_low"], b["ci_high"], color=colour, alpha=0.2, lw=0)
    title = f"{dataset}\n{condition_label(levels)}" if levels else dataset
    ax.set(title=title, xlabel="epoch", ylabel="γ (collaboration weight)")
    return lines


def alpha_heatmaps(runs: pd.DataFrame, out_dir: Path) -> Figure | None:
    """Mean learned α matrix (rows: receiving layer l, columns: contributing layer k) per
    dataset × variant, over the runs with ``alpha = "learned"``."""
    if "alpha" not in runs.columns or "alpha_final" not in runs.columns:
        return None
    learned = runs[runs["alpha"] == "learned"]
    panels = []
    for (dataset, variant), group in learned.groupby(["dataset", "variant"], sort=False):
        mats = [np.asarray(m, dtype=float) for m in group["alpha_final"].map(json_list) if m]
        mats = [m for m in mats if m.ndim == 2 and m.shape == mats[0].shape]
        if mats:
            panels.append((dataset, variant, np.mean(mats, axis=0), len(mats)))
    if not panels:
        return None
    with plt.rc_context(_theme()):
        fig, axes = plt.subplots(1, len(panels), figsize=(2.9 * len(panels) + 0.4, 2.8),
                                 squeeze=False)
        for ax, (dataset, variant, mat, n) in zip(axes[0], panels):
            labels = [str(i + 1) for i in range(mat.shape[0])]
            sns.heatmap(mat, ax=ax, annot=True, fmt=".2f", cmap="viridis", cbar=False,
                        square=True, xticklabels=labels, yticklabels=labels,
                        annot_kws={"fontsize": 7})
            ax.set(title=f"{dataset} {VARIANT_LABEL.get(variant, variant)} (n = {n})",
                   xlabel="contributing layer k", ylabel="receiving layer l")
        fig.tight_layout()
        return _save(fig, "alpha_learned", "Learned α matrices, mean over seeds.", out_dir)


def interaction_plot(desc: pd.DataFrame, axis: str, axis_label: str, out_dir: Path) -> Figure | None:
    """Mean test accuracy (95 % CI) per level of ``axis``, one line per variant, one panel per
    dataset. ``desc``: rows of the saved per-condition descriptives (``dataset, variant, axis``)."""
    if desc.empty or desc[axis].nunique() < 2:
        return None
    datasets = list(dict.fromkeys(desc["dataset"]))
    levels = sorted(desc[axis].unique().tolist(), key=str)
    with plt.rc_context(_theme()):
        fig, axes = plt.subplots(1, len(datasets), figsize=(3.4 * len(datasets) + 0.6, 3.0),
                                 squeeze=False)
        for ax, dataset in zip(axes[0], datasets):
            ds = desc[desc["dataset"] == dataset]
            variants = ordered_variants(ds["variant"])
            for k, variant in enumerate(variants):
                d = ds[ds["variant"] == variant].set_index(axis).reindex(levels)
                x = np.arange(len(levels)) + (k - (len(variants) - 1) / 2) * 0.06
                err = np.vstack([d["mean"] - d["ci_low"], d["ci_high"] - d["mean"]]) * 100
                ax.errorbar(x, d["mean"] * 100, yerr=np.nan_to_num(err), marker="o", ms=4,
                            capsize=2, lw=1.2, color=variant_colour(variant),
                            label=VARIANT_LABEL.get(variant, variant))
            ax.set_xticks(range(len(levels)), [str(v) for v in levels])
            ax.set(title=dataset, xlabel=axis_label, ylabel="test accuracy [%]")
        _legend_right(axes[0][-1])
        fig.tight_layout()
        return _save(fig, f"interaction_{axis}",
                     f"Interaction of {axis_label} and variant (mean, 95 % CI).", out_dir)


_SHORT_AXES = {"theta_placement": "θ", "alpha": "α"}


def short_levels(text: str) -> str:
    """"theta_placement = single" / "theta_placement single" -> "θ single" (figure labels only)."""
    for axis, symbol in _SHORT_AXES.items():
        text = text.replace(f"{axis} = ", f"{symbol} ").replace(f"{axis} ", f"{symbol} ")
    return text


def forest_plot(contrasts: pd.DataFrame, sesoi: float, margin: float, out_dir: Path) -> list[Figure]:
    """Per dataset, every contrast of the analysis plan: its difference [pp] with the unadjusted
    95 % CI (thick) and the simultaneous CI (thin), the zero line, the smallest effect of interest (SESOI,
    dashed) and the equivalence band ±margin (shaded). ``contrasts``: ``PlanResult.contrasts``."""
    figures = []
    if contrasts is None or contrasts.empty:
        return figures
    for dataset in dict.fromkeys(contrasts["dataset"]):
        rows = contrasts[contrasts["dataset"] == dataset].reset_index(drop=True)
        scopes = [short_levels(r.scope) for r in rows.itertuples()]
        labels = [f"{r.label}" + (f" ({sc})" if sc else "") + ("" if r.role == "primary" else " [secondary]")
                  for r, sc in zip(rows.itertuples(), scopes)]
        y = np.arange(len(rows))[::-1]
        with plt.rc_context(_theme()):
            fig, ax = plt.subplots(figsize=(8.0, 0.38 * len(rows) + 1.6))
            ax.axvspan(-100 * margin, 100 * margin, color=_PALETTE[2], alpha=0.15, lw=0,
                       label=f"equivalence band ±{fmt.pct(margin, 1)} pp")
            ax.axvline(0.0, color="black", lw=0.8)
            ax.axvline(100 * sesoi, color=_PALETTE[3], ls="--", lw=1.0,
                       label=f"SESOI +{fmt.pct(sesoi, 1)} pp")
            for yi, r in zip(y, rows.itertuples()):
                colour = _PALETTE[0] if r.role == "primary" else _PALETTE[7]
                if np.isfinite(r.ci_adj_low) and np.isfinite(r.ci_adj_high):
                    ax.plot([100 * r.ci_adj_low, 100 * r.ci_adj_high], [yi, yi], color=colour, lw=1)
                if np.isfinite(r.ci_low) and np.isfinite(r.ci_high):
                    ax.plot([100 * r.ci_low, 100 * r.ci_high], [yi, yi], color=colour, lw=3.5)
                if np.isfinite(r.estimate):
                    ax.plot([100 * r.estimate], [yi], "o", color="white", mec=colour, ms=5, mew=1.5)
            ax.set_yticks(y, labels)
            ax.set(xlabel="difference in test accuracy [pp]", ylabel="",
                   title=f"{dataset}: estimation plot")
            ax.grid(axis="y", visible=False)
            fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=2, frameon=False)
            fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1))
            key = "forest_" + re.sub(r"[^A-Za-z0-9]", "_", dataset)
            figures.append(_save(fig, key, f"{dataset}: every contrast's difference with its 95 % "
                                 "CI (thick, unadjusted) and simultaneous CI (thin, Bonferroni over "
                                 "its family); zero line, the SESOI (smallest effect of interest, dashed) and the "
                                 "equivalence band (shaded).", out_dir))
    return figures


def cd_diagram(ranks: pd.DataFrame, cliques: list[list[str]], n_pairs: int, out_dir: Path) -> Figure | None:
    """Critical-difference diagram (Demšar 2006 layout): each condition at its average rank over the
    dataset × seed blocks (1 = best, axis on top), the better half labelled on the left, the rest on
    the right; a thick bar joins each group with no significant Wilcoxon–Holm pair. ``ranks``:
    ``PlanResult.ranks``; ``cliques``: ``PlanResult.cliques``."""
    if ranks is None or ranks.empty:
        return None
    k = len(ranks)
    conditions, values = list(ranks["condition"]), ranks["avg_rank"].to_numpy(dtype=float)
    names = [short_levels(c) for c in conditions]
    half = (k + 1) // 2
    with plt.rc_context(_theme()):
        height = 1.2 + 0.3 * max(half, k - half) + 0.15 * len(cliques)
        fig, ax = plt.subplots(figsize=(8.0, height))
        ax.set_xlim(0.5, k + 0.5)
        ax.set_ylim(-(max(half, k - half) + 1.2) * 0.3 - 0.15 * len(cliques), 0.35)
        ax.axis("off")
        ax.plot([1, k], [0, 0], color="black", lw=1)
        for tick in range(1, k + 1):
            ax.plot([tick, tick], [0, 0.06], color="black", lw=1)
            ax.text(tick, 0.1, str(tick), ha="center", va="bottom", fontsize=8)
        for i, (name, value) in enumerate(zip(names, values)):
            left = i < half
            row = i if left else k - 1 - i
            y = -(row + 1) * 0.3 - 0.15 * len(cliques)
            x_text = 0.55 if left else k + 0.45
            ax.plot([value, value, x_text], [0, y, y], color="0.35", lw=0.8)
            ax.text(x_text + (-0.02 if left else 0.02), y,
                    f"{name} ({fmt.num(value)})" if left else f"({fmt.num(value)}) {name}",
                    ha="right" if left else "left", va="center", fontsize=8)
        for j, group in enumerate(cliques):
            xs = [values[conditions.index(g)] for g in group]
            y = -0.1 - 0.15 * j
            ax.plot([min(xs) - 0.03, max(xs) + 0.03], [y, y], color=_PALETTE[0], lw=3.5,
                    solid_capstyle="round")
        ax.set_title("average rank over the dataset × seed blocks (1 = best)", fontsize=9)
        fig.tight_layout()
        return _save(fig, "cd_diagram", "Critical-difference diagram (exploratory, beside the plan): "
                     "each condition at its average rank over the dataset × seed blocks; a bar joins "
                     f"conditions with no significant difference (Wilcoxon signed-rank, Holm over "
                     f"all {n_pairs} pairs, α = .05). Demšar (2006) layout."
                     + _cd_floor_note(int(ranks["n_blocks"].min()), n_pairs), out_dir)


def _cd_floor_note(n_blocks: int, n_pairs: int, alpha: float = 0.05) -> str:
    """The caption's warning when no pair can be significant at all: an exact signed-rank p is at
    least 2/2^n over n blocks, so Holm's first step over m pairs is at least m · 2/2^n
    (:func:`cffbench.analysis.verdicts.smallest_decisive_n`); "" when a pair can be."""
    needed = smallest_decisive_n("wilcoxon", n_pairs, alpha)
    if n_blocks >= needed:
        return ""
    floor = min(1.0, n_pairs * 2.0 / 2.0 ** n_blocks)
    return (f" With {n_blocks} blocks no pair can be significant by the exact test, whatever the data (the smallest "
            f"Holm-adjusted exact p is {n_pairs} · 2/2^{n_blocks} = {fmt.apa_decimal(floor)}; "
            f"{needed} blocks are needed), so a bar across conditions here says nothing about "
            "them: read the plan's contrasts instead.")
