"""A run's front as people read it: the table ``mrla-nas search`` and ``pareto`` print, and the plot."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..rundir.records import COMPLETE
from ..space.summary import latency_label
from .run import REFERENCE_LABELS, Run


def _stage_label(row: pd.Series, i: int) -> str:
    """``-`` for no MRLA, else ``L``/``B`` with heads and, if set, the reduction: ``L(h2,r4)``."""
    form = row[f"stage{i}_form"]
    if form == "none":
        return "-"
    reduction = row[f"stage{i}_reduction"]
    extra = "" if pd.isna(reduction) else f",r{reduction}"
    return f"{form[0].upper()}(h{row[f'stage{i}_heads']}{extra})"


def format_front(run: Run) -> str:
    """The front as a text table: one row per network (stage choices, accuracy, FLOPs, params), the knee
    starred, and what the hypervolume measures."""
    if run.front.empty:
        return "no trial has finished at full fidelity yet: the front is empty"
    seeds = int(run.space.proxy.get("seeds", 1))
    acc_head = "accuracy ± sd" if seeds > 1 else "accuracy"
    width = 16 if seeds > 1 else 8
    # a space with backbone choices (a stem, widths) names each row's: the summary does not show them all
    varying = [k for k, v in run.space.backbone.items() if len(v) > 1]
    choice = {int(r["trial_id"]): ", ".join(f"{k}={json.loads(r['backbone']).get(k)}" for k in varying)
              for _, r in run.front.iterrows()} if varying else {}
    choice_width = max([len("backbone")] + [len(c) for c in choice.values()]) + 1 if varying else 0
    choice_head = f"{'backbone':{choice_width}s}" if varying else ""
    validation = run.validation
    validated = validation.by_trial() if validation is not None else {}
    val_head = f" {'validated (95% CI)':>26s}" if validated else ""
    timed = "latency" in run.space.objectives
    lat_head = f" {'latency':>10s}" if timed else ""
    lines = [f"{'':2s}{'trial':>5s}  {'arch':22s} {choice_head}{'stage choices':34s} {acc_head:>{width}s} "
             f"{'FLOPs':>14s} {'params':>10s}{lat_head}{val_head}"]
    for _, r in run.front.iterrows():
        stages = " ".join(_stage_label(r, i) for i in range(1, len(run.space.stages) + 1))
        mark = "*" if int(r["trial_id"]) == run.knee else " "
        acc = f"{r['accuracy']:.4f}" + (f" ± {r['accuracy_sd']:.4f}" if seeds > 1 else "")
        bb = f"{choice[int(r['trial_id'])]:{choice_width}s}" if varying else ""
        v = validated.get(int(r["trial_id"]))
        val = "" if not validated else f" {'not validated' if v is None else _validated_cell(v):>26s}"
        lat = f" {latency_cell(run, r):>10s}" if timed else ""
        lines.append(f"{mark:2s}{int(r['trial_id']):5d}  {r['summary']:22s} {bb}{stages:34s} {acc:>{width}s} "
                     f"{int(r['flops']):14,d} {int(r['params']):10,d}{lat}{val}")
    proxy = run.space.proxy
    measured = (f"on the {proxy['val_size']:,}-image test split" if proxy.get("val_split") == "test"
                else "the proxy's validation accuracy")  # a validation run's own folder may score the test split
    lines.append(f"accuracy: {measured} after {run.recipe}"
                 + (" (mean ± sd over the seeds: training subset, initialisation, batch order)" if seeds > 1 else ""))
    if timed:
        lines.append(f"latency: {latency_label(run.space)}, measured on {run.latency_device or 'an unrecorded device'}")
    if validation is not None:
        lines.append(f"validated: retrained by `mrla-nas validate` ({validation.path.name}/) with {validation.recipe}")
    lines.append(f"front: {len(run.front)} of {int((run.trials['status'] == COMPLETE).sum())} complete trials "
                 f"({len(run.space.objectives)} objectives: {', '.join(run.space.objective_names())}); "
                 f"hypervolume {run.hypervolume:.4f} (fraction of the box {box_label(run)} that the front "
                 f"dominates); * = knee")
    return "\n".join(lines)


def box_label(run: Run) -> str:
    """The hypervolume's reference box in words: ``accuracy 0..1 x FLOPs 0..40,000,000 (fvcore) x ...``."""
    parts = []
    for name, ref in zip(run.space.objective_names(), run.reference):
        if name == "accuracy":
            parts.append(f"accuracy {ref:g}..1")
        elif name == "flops":
            parts.append(f"FLOPs 0..{ref:,.0f} ({run.space.flops_convention})")
        elif name == "latency":
            unit = "x the reference" if run.space.latency["metric"] == "ratio" else "ms"
            parts.append(f"latency 0..{ref:.3g} ({unit})")
        else:
            parts.append(f"{name} 0..{ref:,.0f}")
    return " x ".join(parts)


def latency_cell(run: Run, row) -> str:
    if pd.isna(row.get("latency")):
        return "-"
    return f"{row['latency']:.3f}x" if run.space.latency["metric"] == "ratio" else f"{row['latency']:.2f} ms"


def _axis(run: Run):
    """The plot's x axis: latency where it is an objective, else FLOPs: (column, scale, label)."""
    if "latency" in run.space.objectives:
        unit = (f"x {run.space.latency_reference().summary()}" if run.space.latency["metric"] == "ratio"
                else "ms")
        step = "training step" if run.space.latency["mode"] == "train_step" else "inference"
        return "latency", 1.0, f"latency ({step}, {unit}; {run.latency_device or 'device not recorded'})"
    return "flops", 1e-6, f"MFLOPs ({run.space.flops_convention}, 1 multiply-add = 1 FLOP)"


def _validated_cell(row) -> str:
    return f"{row['val_mean']:.4f} [{row['val_low']:.4f}, {row['val_high']:.4f}]"


def plot_runs(runs: Sequence[Run], out_path) -> Path:
    """All trials faded, each run's front highlighted, reference placements labelled."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    x, scale, x_label = _axis(runs[0])
    # a third objective (params; FLOPs where latency is on the axis) is shown as colour: the front
    # points' fill, on one shared scale
    colour = next((c for c in ("params", "flops") if c != x and c in runs[0].space.objectives), None)
    third = [r for r in runs if colour in r.space.objectives and len(r.front)] if colour else []
    norm = None
    if third:
        values = pd.concat([r.front[colour].astype(float) for r in third])
        norm = matplotlib.colors.Normalize(values.min(), values.max() if values.max() > values.min() else values.min() + 1)
    for i, run in enumerate(runs):
        color = f"C{i}"
        done = run.trials[run.trials["accuracy"].notna()] if not run.trials.empty else run.trials
        if len(done) and x in done:
            ax.scatter(done[x].astype(float) * scale, done["accuracy"], s=14, alpha=0.25, color=color)
        if len(run.front):
            # with three objectives the front is not a curve in this plane: points, not a line
            style = "o" if len(run.space.objectives) > 2 else "-o"
            fx = run.front[x].astype(float) * scale
            ax.plot(fx, run.front["accuracy"], style, color=color, ms=5,
                    label=f"{run.path.name}: front (HV {run.hypervolume:.4f}), proxy: {run.recipe}")
            if int(run.space.proxy.get("seeds", 1)) > 1:  # seed noise: one sd either way
                ax.errorbar(fx, run.front["accuracy"], yerr=run.front["accuracy_sd"].astype(float), fmt="none",
                            ecolor=color, capsize=3, alpha=0.8)
            if norm is not None and colour in run.space.objectives:
                sc = ax.scatter(fx, run.front["accuracy"], s=40, c=run.front[colour].astype(float), cmap="viridis",
                                norm=norm, edgecolors=color, zorder=3)
            if run.knee is not None:
                k = run.front[run.front["trial_id"] == run.knee].iloc[0]
                ax.scatter([float(k[x]) * scale], [k["accuracy"]], s=120, facecolors="none", edgecolors=color)
        validation = run.validation
        if validation is not None and len(validation.table) and x in validation.table:
            t = validation.table
            ax.errorbar(t[x].astype(float) * scale, t["val_mean"],
                        yerr=[t["val_mean"] - t["val_low"], t["val_high"] - t["val_mean"]], fmt="s", mfc="none",
                        color=color, ms=5, capsize=2, label=f"{run.path.name}: validated ({validation.recipe})")
        for p, row in run.reference_rows().items():
            if x in row and not pd.isna(row[x]):
                ax.annotate(REFERENCE_LABELS[p], (float(row[x]) * scale, row["accuracy"]), fontsize=8,
                            xytext=(4, -10), textcoords="offset points")
    if norm is not None:
        fig.colorbar(sc, ax=ax, label=f"{ {'flops': 'FLOPs'}.get(colour, colour)} (third objective)")
    ax.set_xlabel(x_label)
    recipes = {r.recipe for r in runs}
    ax.set_ylabel("validation accuracy" + (f"\nproxy: {runs[0].recipe}" if len(recipes) == 1 else " (recipes in the legend)"),
                  fontsize=8 if len(recipes) == 1 else None)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # no front yet: nothing to name
        ax.legend(fontsize=8, loc="lower right")
    ax.set_title(f"accuracy against {'latency' if x == 'latency' else 'FLOPs'}: all trials faded, Pareto front "
                 "highlighted, knee circled", fontsize=9)
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path)
    plt.close(fig)
    return out_path
