"""The off-policy study's figures, tables and report (``python -m training study offpolicy``).

Inputs: run directories whose ``run.json`` config holds ``rollout_lag`` (the level). Per run: the means over
steps of the regime and mechanism statistics (``workbench.stats.mechanisms``), the final validation Pass@1 and
a stability verdict. Per level: every variant's value as the mean over seeds with the min-max band, and each
variant's difference to GRPO and to DAPO paired by seed with a bootstrap 95% interval
(``workbench.stats.paired``).

Stability rule (stated in the report): a run's entropy *collapsed* when the mean entropy of its last
``TAIL`` steps is below ``COLLAPSE`` x that of its first ``HEAD`` steps, *exploded* when above ``EXPLODE`` x;
its Pass@1 *collapsed* when the final validation Pass@1 is below ``COLLAPSE`` x the validation before training.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.figures.common import METHOD_COLORS, new_figure, save_figure
from workbench.figures.from_runs import EXTRA_COLORS
from workbench.stats.dynamics import final_metric, initial_validation
from workbench.stats.mechanisms import mechanism_stats
from workbench.stats.paired import paired_differences
from workbench.stats.variants import RunLike, as_run, seed_of, variant_of

HEAD, TAIL = 3, 5
COLLAPSE, EXPLODE = 0.5, 2.0
SUMMARY = {  # per-run mean over steps -> (panel title, y label)
    "sbar_tau_gt1": ("regime: share of rollouts with |s̄|/τ > 1", "share"),
    "pos_hard_s_lift": ("misassignment: weight lift of s<0 tokens (correct)", "share / count share"),
    "pos_hard_p_lift": ("misassignment: weight lift of p_old<0.5 tokens (correct)", "share / count share"),
    "neg_top_ratio_share": ("domination: top-1% tokens by ratio (wrong)", "share of weight"),
    "gini_rollout": ("concentration over rollouts", "Gini of rollout weight"),
    "final_val_pass1": ("outcome: final validation Pass@1", "Pass@1"),
}
PER_RUN_MEANS = ("sbar_tau_q90", "sbar_tau_gt1", "s_abs_q99", "pos_hard_s_lift", "pos_hard_p_lift",
                 "neg_top_ratio_share", "top_rollout_share", "gini_rollout", "sbar_correct", "sbar_wrong")  # fmt: skip


def level_of(run: RunLike) -> int:
    """The run's off-policy level: ``config.rollout_lag`` (0 for runs made before the flag existed)."""
    return int(as_run(run).config.get("rollout_lag", 0) or 0)


def _stability(run) -> dict[str, object]:
    m = run.metrics(["step", "entropy_mean", "skipped_updates"]).sort_values("step")
    ent = m["entropy_mean"].to_numpy(dtype=float)
    head, tail = float(np.mean(ent[:HEAD])), float(np.mean(ent[-TAIL:]))
    ratio = tail / head if head > 0 else math.nan
    return {
        "entropy_head": head,
        "entropy_tail": tail,
        "entropy_ratio": ratio,
        "entropy_collapsed": bool(ratio < COLLAPSE),
        "entropy_exploded": bool(ratio > EXPLODE),
        "skipped_updates": int(m["skipped_updates"].sum()),
    }


def study_data(
    runs: Sequence[RunLike], log: Callable[[str], None] = lambda _: None
) -> dict[str, pd.DataFrame]:
    """``per_run``: one row per run (level, variant, seed, means over steps, outcome, stability); ``per_step``:
    ``mechanism_stats`` of every run with level, variant and seed."""
    rows, steps = [], []
    for i, r in enumerate(runs):
        run = as_run(r)
        v = variant_of(run)
        info = {"run": run.name, "level": level_of(run), "variant": v.key, "label": v.label, "method": v.method,
                "seed": seed_of(run)}  # fmt: skip
        mech = mechanism_stats(run)
        steps.append(mech.assign(**{k: info[k] for k in ("level", "variant", "label", "seed")}))
        final = float(final_metric(run)["value"].iloc[0])
        init_v = float(initial_validation(run).get("val_pass1", math.nan))
        rows.append({**info, **{c: float(mech[c].mean()) for c in PER_RUN_MEANS},
                     "final_val_pass1": final, "initial_val_pass1": init_v,
                     "pass1_collapsed": bool(final < COLLAPSE * init_v) if init_v > 0 else False,
                     **_stability(run)})  # fmt: skip
        log(f"  read {i + 1}/{len(runs)}: {run.name}")
    return {"per_run": pd.DataFrame(rows), "per_step": pd.concat(steps, ignore_index=True)}


def _colors(per_run: pd.DataFrame) -> dict[str, str]:
    out, extra = {}, iter(EXTRA_COLORS)
    for key, method in per_run[["variant", "method"]].drop_duplicates().itertuples(index=False):
        out[key] = METHOD_COLORS.get(method, "#333333") if key == method else next(extra, "#333333")
    return out


def _order(per_run: pd.DataFrame) -> list[tuple[str, str]]:
    return list(per_run[["variant", "label"]].drop_duplicates().itertuples(index=False, name=None))


def mechanisms_figure(per_run: pd.DataFrame):
    """Each SUMMARY statistic against the level: per variant the mean over seeds with a min-max bar; variants
    are spread a little along x so that coinciding points stay visible."""
    fig, axes = new_figure(3, 2, width=4.6, height=3.2)
    colors, order = _colors(per_run), _order(per_run)
    levels = sorted(per_run["level"].unique())
    for ax, (col, (title, ylabel)) in zip(axes.flat, SUMMARY.items(), strict=True):
        for j, (key, label) in enumerate(order):
            sub = per_run[per_run["variant"] == key].groupby("level")[col].agg(["mean", "min", "max"])
            sub = sub.reindex(levels)
            x = np.arange(len(levels)) + (j - (len(order) - 1) / 2) * 0.06
            ax.errorbar(x, sub["mean"], yerr=[sub["mean"] - sub["min"], sub["max"] - sub["mean"]], marker="o",
                        ms=4, lw=1.2, capsize=2, color=colors[key], label=label,
                        ls="--" if key != per_run.loc[per_run.variant == key, "method"].iloc[0] else "-")  # fmt: skip
        if col.endswith("_lift"):
            ax.axhline(1.0, color="k", lw=0.8, ls=":")  # hard tokens get exactly their share of the count
        ax.set_xticks(range(len(levels)), [f"lag {k}" for k in levels])
        ax.set_title(title, fontsize=9)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=8)
    n_seeds = per_run.groupby(["level", "variant"])["seed"].nunique()
    fig.suptitle(
        f"Off-policy level (rollout lag) vs the paper's mechanisms: per variant the mean over seeds "
        f"({_span(n_seeds.min(), n_seeds.max())} per point) of each run's mean over steps, bars min-max; "
        "points spread along x to stay visible; dotted line: lift 1 (no misassignment)",
        fontsize=8,
    )
    return fig


def _span(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"


def paired_figure(paired: pd.DataFrame):
    """Final Pass@1 difference to GRPO (left) and to DAPO (right) per level, with bootstrap 95% intervals."""
    bases = list(dict.fromkeys(paired["baseline"]))
    fig, axes = new_figure(len(bases), 1, width=5.0, height=3.6)
    for ax, base in zip(axes.flat, bases, strict=True):
        sub = paired[paired["baseline"] == base]
        labels = list(dict.fromkeys(sub["label"]))
        levels = sorted(sub["level"].unique())
        for i, level in enumerate(levels):
            cell = sub[sub["level"] == level].set_index("label").reindex(labels)
            y = np.arange(len(labels)) + (i - (len(levels) - 1) / 2) * 0.22
            ax.errorbar(cell["mean_diff"], y, xerr=[cell["mean_diff"] - cell["lo"], cell["hi"] - cell["mean_diff"]],
                        fmt="o", ms=4, capsize=2, label=f"lag {level}")  # fmt: skip
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel(f"final Pass@1 - {base.upper()} (paired by seed)", fontsize=8)
        ax.set_title(f"difference to {base.upper()}, bootstrap 95% interval", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    axes.flat[0].legend(fontsize=8, loc="best")
    return fig


def anchor_figure(per_step: pd.DataFrame, level: int):
    """Mean s_bar of correct and of wrong rollouts over training at ``level``, per REAL variant (mean over
    seeds, min-max band): the anchor's argument (paper Sec. 4, 5.3)."""
    sub = per_step[(per_step["level"] == level) & per_step["variant"].str.startswith("real")]
    keys = list(dict.fromkeys(sub["variant"]))
    fig, axes = new_figure(len(keys), 1, width=3.6, height=3.2)
    for ax in axes.flat[1:]:
        ax.sharey(axes.flat[0])  # one scale: the variants' s_bar can be compared by eye
    for ax, key in zip(axes.flat, keys, strict=True):
        cell = sub[sub["variant"] == key]
        for col, color, name in (("sbar_correct", "#2ca02c", "correct"), ("sbar_wrong", "#d62728", "wrong")):
            g = cell.groupby("step")[col].agg(["mean", "min", "max"])
            ax.plot(g.index, g["mean"], color=color, label=f"{name} rollouts")
            ax.fill_between(g.index, g["min"], g["max"], color=color, alpha=0.15, lw=0)
        ax.axhline(0, color="k", lw=0.6)
        ax.set_title(f"{cell['label'].iloc[0]} (lag {level})", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    axes.flat[0].set_ylabel("mean s̄ (later mini-batches)", fontsize=8)
    axes.flat[0].legend(fontsize=8)
    return fig


def real_weights_figure(runs: Sequence[RunLike], level: int, tau_of: Callable[[RunLike], float]):
    """REAL's logged rollout weights against s_bar at ``level`` (correct and wrong rollouts of mixed groups),
    with the closed form W = (1/tau) / (1 + C e^{+-s_bar/tau}) drawn at C = 1 (alone in its class) and at the
    median logged C."""
    fig, axes = new_figure(1, 1, width=6.0, height=4.0)
    ax = axes[0, 0]
    chosen = [as_run(r) for r in runs if level_of(r) == level and variant_of(r).key == "real"]
    if not chosen:
        ax.text(0.5, 0.5, f"no REAL run at lag {level}", ha="center", transform=ax.transAxes)
        return fig
    cols = ["s_bar", "weight", "log_c", "reward", "used"]
    df = pd.concat([run.rollouts(columns=cols) for run in chosen], ignore_index=True)
    df = df[df["used"]]
    tau = tau_of(chosen[0])
    for correct, color, sign, name in ((True, "#2ca02c", 1.0, "correct"), (False, "#d62728", -1.0, "wrong")):
        d = df[(df["reward"] > 0.5) == correct]
        if d.empty:
            continue
        ax.scatter(
            d["s_bar"], d["weight"], s=3, alpha=0.25, color=color, label=f"{name}: logged W ({len(d)})"
        )
        grid = np.linspace(min(df["s_bar"].min(), -1), max(df["s_bar"].max(), 1), 300)
        for c, ls in ((1.0, ":"), (float(np.exp(np.median(d["log_c"])))
                                   if d["log_c"].notna().any() else 1.0, "-")):  # fmt: skip
            w = (1 / tau) / (1 + c * np.exp(sign * grid / tau))
            ax.plot(grid, w, color=color, ls=ls, lw=1.2, label=f"{name}: closed form, C={c:.2f}")
    ax.axhline(1 / tau, color="k", lw=0.6, ls="--", label="bound 1/τ")
    ax.set_xlabel("s̄ (rollout mean log-ratio at its update)")
    ax.set_ylabel("rollout weight W")
    ax.set_title(f"REAL (τ={tau:g}) weights against s̄, lag {level}", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="outside right upper")
    ax.grid(alpha=0.3)
    return fig


def _fmt_cell(mean: float, lo: float, hi: float) -> str:
    if not np.isfinite(lo):
        return f"{mean:+.3f} (too few pairs)"
    return f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def anchor_lines(pr: pd.DataFrame) -> list[str]:
    """The anchor's argument: REAL w/o anchor minus REAL, paired by seed, on the mean s_bar of correct and of
    wrong rollouts and on their gap (each run's mean over steps)."""
    if not {"real", "real_no_anchor"} <= set(pr["variant"]):
        return []
    sub = pr[pr["variant"].isin(["real", "real_no_anchor"])].assign(
        method=lambda d: d["variant"], sbar_gap=lambda d: d["sbar_correct"] - d["sbar_wrong"]
    )
    lines = ["", "## The anchor's argument", "",
             "The paper argues that without the anchor logit the scores of both classes can fall together while "
             "their gap grows. REAL w/o anchor minus REAL, paired by seed (each run's mean s̄ over steps, later "
             "mini-batches; bootstrap 95% interval):", "",
             "| level | s̄ correct: REAL / difference | s̄ wrong: REAL / difference | gap: REAL / difference |",
             "| --- | --- | --- | --- |"]  # fmt: skip
    diffs = {
        c: paired_differences(sub.assign(value=sub[c]), "real")
        for c in ("sbar_correct", "sbar_wrong", "sbar_gap")
    }
    for level in sorted(sub["level"].unique()):
        base = sub[(sub.level == level) & (sub.variant == "real")]
        cells = []
        for c, d in diffs.items():
            r = d[d.level == level].iloc[0]
            cells.append(f"{base[c].mean():+.3f} / {_fmt_cell(r.mean_diff, r.lo, r.hi)}")
        lines.append(f"| lag {level} | " + " | ".join(cells) + " |")
    words = []
    for c, name in (("sbar_correct", "correct rollouts' s̄"), ("sbar_wrong", "wrong rollouts' s̄"),
                    ("sbar_gap", "the gap")):  # fmt: skip
        res = diffs[c][diffs[c]["resolved"]]
        if res.empty:
            words.append(f"{name}: no resolved difference at any level")
        else:
            where = ", ".join(f"lag {r.level} ({r.mean_diff:+.3f})" for r in res.itertuples(index=False))
            words.append(f"{name}: lower without the anchor at {where}" if (res.mean_diff < 0).all()
                         else f"{name}: differs at {where}")  # fmt: skip
    lines += ["", "In words: " + "; ".join(words) + "."]
    return lines


def tau_check_lines(pr: pd.DataFrame, small: str = "real[tau=0.1]") -> list[str]:
    """The paper's claim that tau = 0.1 "collapses early": REAL at tau = 0.1 against REAL (tau = 0.5) per level,
    paired by seed, on the entropy ratio (last steps / first steps) and on the final Pass@1, with the regime
    each was in."""
    if small not in set(pr["variant"]) or "real" not in set(pr["variant"]):
        return []
    lines = ["", "## The paper's tau = 0.1 claim", "",
             "The paper reports that REAL with tau = 0.1 collapses early. Per level, REAL tau = 0.1 minus REAL "
             "(tau = 0.5), paired by seed (bootstrap 95% interval):", "",
             "| level | abs(s̄)/τ q90 (τ=0.1 / τ=0.5) | entropy ratio, difference | final Pass@1, difference | "
             "entropy collapsed (τ=0.1 / τ=0.5) |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    sub = pr[pr["variant"].isin([small, "real"])].assign(method=lambda d: d["variant"])
    ent = paired_differences(sub.assign(value=sub["entropy_ratio"]), "real")
    fin = paired_differences(sub.assign(value=sub["final_val_pass1"]), "real")
    for level in sorted(sub["level"].unique()):
        a, b = (
            sub[(sub.level == level) & (sub.variant == small)],
            sub[(sub.level == level) & (sub.variant == "real")],
        )
        e = ent[ent.level == level].iloc[0]
        f = fin[fin.level == level].iloc[0]
        lines.append(
            f"| lag {level} | {a.sbar_tau_q90.median():.2f} / {b.sbar_tau_q90.median():.2f} | "
            f"{_fmt_cell(e.mean_diff, e.lo, e.hi)} | {_fmt_cell(f.mean_diff, f.lo, f.hi)} | "
            f"{int(a.entropy_collapsed.sum())}/{len(a)} / {int(b.entropy_collapsed.sum())}/{len(b)} |"
        )
    collapsed = int(sub[sub.variant == small].entropy_collapsed.sum())
    lines += ["", f"In words: {collapsed} of {int((sub.variant == small).sum())} tau = 0.1 runs meet the entropy "
              "collapse rule; " + ("the claim is not reproduced in these runs." if collapsed == 0 else
                                   "see the table for the levels where it happens.")]  # fmt: skip
    return lines


def write_report(data: dict[str, pd.DataFrame], paired: pd.DataFrame, out: Path, command: str) -> Path:
    """Markdown: the regime of each level, the mechanism statistics, paired differences with intervals and
    what is resolved, stability counts, and the tau = 0.1 check, in plain words generated from the numbers."""
    pr = data["per_run"]
    lines = [
        "# Off-policy study: report",
        "",
        f"Made by `{command}` on {dt.date.today().isoformat()} ({platform.machine()}, {os.cpu_count()} CPUs). "
        f"{len(pr)} runs: levels {', '.join(f'lag {k}' for k in sorted(pr.level.unique()))}; "
        f"{pr.variant.nunique()} variants; seeds {', '.join(map(str, sorted(pr.seed.unique())))}. "
        "Every number below is computed from the runs by `workbench.figures.offpolicy`.",
        "",
        "## Regime of each level",
        "",
        "Means over each run's steps (later mini-batches), then the median over runs. abs(s̄)/τ uses each "
        "method's τ (REAL's 0.5 for methods without one). REAL's weights depend on s̄ only through e^(s̄/τ): "
        "where abs(s̄)/τ stays far below 1 they are set by the group's composition alone.",
        "",
        "| level | variant | abs(s̄)/τ q90 | share abs(s̄)/τ > 1 | abs(s_t) q99 |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    reg = pr.groupby(["level", "label"], sort=False)[["sbar_tau_q90", "sbar_tau_gt1", "s_abs_q99"]].median()
    for (level, label), row in reg.sort_index(level=0, sort_remaining=False).iterrows():
        lines.append(
            f"| lag {level} | {label} | {row.sbar_tau_q90:.2f} | {row.sbar_tau_gt1:.2f} | {row.s_abs_q99:.2f} |"
        )
    lines += ["", "## Mechanism statistics (mean over seeds ± sd)", ""]
    cols = ["pos_hard_s_lift", "pos_hard_p_lift", "neg_top_ratio_share", "gini_rollout", "final_val_pass1"]
    lines.append("| level | variant | " + " | ".join(cols) + " |")
    lines.append("| --- | --- |" + " ---: |" * len(cols))
    agg = pr.groupby(["level", "label"], sort=False)[cols].agg(["mean", "std"])
    for (level, label), row in agg.sort_index(level=0, sort_remaining=False).iterrows():
        cells = [f"{row[(c, 'mean')]:.3f} ± {row[(c, 'std')]:.3f}" for c in cols]
        lines.append(f"| lag {level} | {label} | " + " | ".join(cells) + " |")
    lines += ["", "## Final validation Pass@1: differences paired by seed (bootstrap 95% interval)", ""]
    lines.append("| level | variant | baseline | pairs | difference [interval] | resolved |")
    lines.append("| --- | --- | --- | ---: | --- | --- |")
    for r in paired.itertuples(index=False):
        lines.append(f"| lag {r.level} | {r.label} | {r.baseline.upper()} | {r.n_pairs} | "
                     f"{_fmt_cell(r.mean_diff, r.lo, r.hi)} | {'yes' if r.resolved else 'no'} |")  # fmt: skip
    resolved = paired[paired["resolved"]]
    lines += ["", "In words: "]
    if resolved.empty:
        lines.append("no difference in final Pass@1 to GRPO or DAPO is resolved at any level: every interval "
                     "contains 0, so these runs do not tell the methods apart on the outcome.")  # fmt: skip
    else:
        for r in resolved.itertuples(index=False):
            word = "above" if r.mean_diff > 0 else "below"
            lines.append(f"- lag {r.level}: {r.label} ends {word} {r.baseline.upper()} by {abs(r.mean_diff):.3f} "
                         f"[{r.lo:+.3f}, {r.hi:+.3f}] ({r.n_pairs} seeds).")  # fmt: skip
        lines.append(
            f"- The other {len(paired) - len(resolved)} of {len(paired)} comparisons are not resolved."
        )
    lines += ["", "## Stability", "",
              f"Rule: entropy collapsed when the mean entropy of a run's last {TAIL} steps is below {COLLAPSE} x "
              f"that of its first {HEAD} steps, exploded when above {EXPLODE} x; Pass@1 collapsed when the final "
              f"validation Pass@1 is below {COLLAPSE} x the validation before training.", "",
              "| level | variant | runs | entropy collapsed | entropy exploded | Pass@1 collapsed | skipped updates |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    st = pr.groupby(["level", "label"], sort=False).agg(
        runs=("run", "count"), ec=("entropy_collapsed", "sum"), ee=("entropy_exploded", "sum"),
        pc=("pass1_collapsed", "sum"), sk=("skipped_updates", "sum"),
    )  # fmt: skip
    for (level, label), row in st.sort_index(level=0, sort_remaining=False).iterrows():
        lines.append(f"| lag {level} | {label} | {row.runs} | {row.ec} | {row.ee} | {row.pc} | {row.sk} |")
    lines += anchor_lines(pr)
    lines += tau_check_lines(pr)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def build_study_outputs(
    runs: Sequence[RunLike], out_dir: Path, *, command: str, log: Callable[[str], None] = lambda _: None
) -> list[Path]:
    """Read the runs, write ``offpolicy_{mechanisms,paired,anchor,real_weights}.{png,pdf,json}``,
    ``offpolicy_runs.csv``, ``offpolicy_paired.csv`` and ``offpolicy_report.md`` into ``out_dir``."""
    from workbench.stats.mechanisms import run_tau

    out_dir = Path(out_dir)
    data = study_data(runs, log)
    pr = data["per_run"]
    labels = dict(pr[["variant", "label"]].drop_duplicates().itertuples(index=False, name=None))
    vals = pr.rename(columns={"variant": "key"}).assign(
        method=lambda d: d["key"], value=lambda d: d["final_val_pass1"]
    )
    paired = pd.concat(
        [paired_differences(vals, base) for base in ("grpo", "dapo") if base in set(pr["variant"])],
        ignore_index=True,
    )
    paired["label"] = paired["method"].map(labels)
    top = int(pr["level"].max())
    meta = {"runs": [as_run(r).name for r in runs], "levels": sorted(map(int, pr.level.unique()))}
    paths: list[Path] = []
    paths += save_figure(mechanisms_figure(pr), "offpolicy_mechanisms", out_dir, meta, command)
    if not paired.empty:
        paths += save_figure(paired_figure(paired), "offpolicy_paired", out_dir, meta, command)
    paths += save_figure(anchor_figure(data["per_step"], top), "offpolicy_anchor", out_dir, meta, command)
    fig = real_weights_figure(runs, top, lambda r: run_tau("real", as_run(r).config.get("hparams")))
    paths += save_figure(fig, "offpolicy_real_weights", out_dir, meta, command)
    pr.to_csv(out_dir / "offpolicy_runs.csv", index=False, float_format="%.6g")
    paired.to_csv(out_dir / "offpolicy_paired.csv", index=False, float_format="%.6g")
    paths += [out_dir / "offpolicy_runs.csv", out_dir / "offpolicy_paired.csv"]
    paths.append(write_report(data, paired, out_dir / "offpolicy_report.md", command))
    return paths
