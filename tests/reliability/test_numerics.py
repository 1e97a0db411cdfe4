"""Odd numerics, end to end: every objective, the closed forms, the trainer's logging, the statistics, the figures.

Each case has the defined behaviour listed in docs/reliability.md (the numerics table); these tests hold the
code to it. The rule behind the table: a value that cannot be computed is refused with a ``ValueError`` naming
where it is, a quantity that is undefined is null in the logs and NaN in a statistic's documented columns, and
nothing non-finite is plotted.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from matplotlib.collections import Collection
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.text import Text

from tests.training.conftest import small_config
from training.cli import main as train_main
from training.loop import Trainer
from workbench import stats
from workbench.closed_forms import grpo_token_weight, real_weight, token_gradient
from workbench.figures.fig1 import Fig1Params, build_fig1
from workbench.figures.registry import RUN_FIGURES
from workbench.methods import CLIP_METHODS, METHODS, REAL_METHODS, SPECS
from workbench.objectives import OBJECTIVES
from workbench.runlog import NULLABLE, SCHEMAS, RunFormatError, RunWriter, open_run, to_table

TORCH_DTYPES = [torch.float32, torch.float64]


def make_batch(rewards, group_ids, s, lengths=None, T=5, dtype=torch.float64, seed=0):
    """A batch with the given rewards, groups and per-rollout log-ratio ``s`` (constant over the tokens, so
    ``s_bar = s``), garbage (NaN) on padding, and the reference at the current policy."""
    g = torch.Generator().manual_seed(seed)
    b = len(rewards)
    lengths = torch.full((b,), T) if lengths is None else torch.as_tensor(lengths)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    old = -torch.rand(b, T, generator=g, dtype=dtype) * 3
    logp = old + torch.as_tensor(s, dtype=dtype)[:, None]
    nan = torch.tensor(math.nan, dtype=dtype)
    old, logp = torch.where(mask, old, nan), torch.where(mask, logp, nan)
    return {
        "logp": logp.clone().requires_grad_(True),
        "old_logp": old,
        "mask": mask,
        "rewards": torch.as_tensor(rewards, dtype=dtype),
        "group_ids": torch.as_tensor(group_ids),
        "ref_logp": logp.detach().clone(),
    }


def run_objective(method, batch, **hp):
    args = [batch[k] for k in ("logp", "old_logp", "mask", "rewards", "group_ids")]
    res = OBJECTIVES[method](*args, ref_logp=batch["ref_logp"], **hp)
    res.loss.backward()
    closed = token_gradient(method, *[a.detach() if torch.is_tensor(a) else a for a in args],
                            ref_logp=batch["ref_logp"], **hp)  # fmt: skip
    return res, batch["logp"].grad, closed


def assert_all_finite(res, grad, closed, mask):
    assert math.isfinite(float(res.loss.detach()))
    assert all(math.isfinite(v) for v in res.metrics.values()), res.metrics
    assert torch.isfinite(grad).all() and torch.isfinite(closed.grad).all()
    assert torch.isfinite(closed.token_weight).all() and torch.isfinite(closed.rollout_weight).all()
    assert (grad[~mask] == 0).all()  # padding (NaN garbage there) gets no gradient
    torch.testing.assert_close(grad, closed.grad, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------------ refused inputs


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("field", ["logp", "old_logp", "ref_logp"])
@pytest.mark.parametrize("value", [math.nan, -math.inf, math.inf], ids=["nan", "-inf", "+inf"])
def test_a_non_finite_log_prob_on_a_response_token_is_refused(method, field, value):
    batch = make_batch([1, 0, 1, 0], [0, 0, 1, 1], [0.1, -0.1, 0.2, 0.0])
    x = batch[field].detach().clone()
    x[2, 1] = value
    batch[field] = x.requires_grad_(True) if field == "logp" else x
    message = rf"{field} holds 1 NaN/inf value\(s\) on response tokens, first at \[row, pos\] = \[2, 1\]"
    args = [batch[k] for k in ("logp", "old_logp", "mask", "rewards", "group_ids")]
    with pytest.raises(ValueError, match=message):
        OBJECTIVES[method](*args, ref_logp=batch["ref_logp"])
    with pytest.raises(ValueError, match=message):
        token_gradient(method, *[a.detach() for a in args], ref_logp=batch["ref_logp"])


@pytest.mark.parametrize("method", METHODS)
def test_non_finite_values_on_padding_are_ignored(method):
    batch = make_batch([1, 0, 1, 0, 1], [0, 0, 1, 1, 1], [0.3, -0.2, 0.1, 0.0, -0.4], lengths=[1, 5, 2, 3, 4])
    for k, fill in (("old_logp", -math.inf), ("ref_logp", math.inf)):
        batch[k] = torch.where(batch["mask"], batch[k], torch.tensor(fill, dtype=torch.float64))
    assert_all_finite(*run_objective(method, batch), batch["mask"])


@pytest.mark.parametrize("method", METHODS)
def test_an_empty_response_or_batch_is_refused(method):
    batch = make_batch([1, 0, 1], [0, 0, 0], [0.1, 0.2, 0.3], lengths=[3, 0, 2])
    args = [batch[k] for k in ("logp", "old_logp", "mask", "rewards", "group_ids")]
    with pytest.raises(
        ValueError, match=r"1 response\(s\) have no token \(mask row all 0\), e\.g\. rows \[1\]"
    ):
        OBJECTIVES[method](*args)
    empty = [torch.zeros(0, 4, dtype=torch.float64), torch.zeros(0, 4, dtype=torch.float64),
             torch.zeros(0, 4, dtype=torch.bool), torch.zeros(0), torch.zeros(0, dtype=torch.long)]  # fmt: skip
    with pytest.raises(ValueError, match="the batch holds no rollout"):
        OBJECTIVES[method](*empty)


# ------------------------------------------------------------------------------------------------ degenerate groups

GROUP_CASES = {
    "singletons": ([1, 0, 1, 0], [0, 1, 2, 3]),
    "all_correct": ([1] * 6, [0, 0, 0, 1, 1, 1]),
    "all_wrong": ([0] * 6, [0, 0, 0, 1, 1, 1]),
    "one_of_each": ([1, 1, 0, 0, 1, 0], [0, 0, 1, 1, 2, 2]),  # all-correct, all-wrong and a mixed group
}


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
@pytest.mark.parametrize("case", list(GROUP_CASES))
@pytest.mark.parametrize("method", METHODS)
def test_degenerate_groups_give_no_gradient_and_nothing_non_finite(method, case, dtype):
    rewards, groups = GROUP_CASES[case]
    s = np.linspace(-0.3, 0.3, len(rewards))
    batch = make_batch(rewards, groups, s, dtype=dtype)
    res, grad, closed = run_objective(method, batch, **({"kl_beta": 0.0} if method == "grpo" else {}))
    assert_all_finite(res, grad, closed, batch["mask"])
    groups_t = torch.as_tensor(groups)
    r = torch.as_tensor(rewards)
    mixed = torch.tensor([bool(r[groups_t == g].min() < r[groups_t == g].max()) for g in groups])
    # Only groups that mix labels carry gradient (clip family: A = 0 there; REAL family: the group is not used).
    assert (grad[~mixed] == 0).all()
    assert closed.used.tolist() == mixed.tolist()
    if method in CLIP_METHODS:
        assert (closed.advantage[~mixed] == 0).all()
    if method == "real_no_anchor":  # log C+ / C- is +inf where a group lacks a label: weight exactly 0
        assert torch.isinf(closed.log_c[~mixed]).all() and (closed.log_c[~mixed] > 0).all()
        assert torch.isfinite(closed.log_c[mixed]).all()
        assert (closed.rollout_weight[~mixed] == 0).all()
    elif method in REAL_METHODS:
        assert torch.isfinite(closed.log_c).all()


@pytest.mark.parametrize("method", sorted(REAL_METHODS))
@pytest.mark.parametrize("case", list(GROUP_CASES))
def test_real_family_with_every_group_admitted(method, case):
    """``group_filter="all"``: degenerate groups enter the loss; REAL and BCE give them a finite, non-zero
    gradient, the no-anchor loss is 0 on a group lacking a label (its C is infinite)."""
    rewards, groups = GROUP_CASES[case]
    batch = make_batch(rewards, groups, np.linspace(-0.3, 0.3, len(rewards)))
    res, grad, closed = run_objective(method, batch, group_filter="all")
    assert_all_finite(res, grad, closed, batch["mask"])
    nonzero = (grad.abs().sum(1) > 0).tolist()
    assert closed.used.all()
    if method == "real_no_anchor":  # only the rollouts of groups that mix labels
        mixed = [len({r for r, h in zip(rewards, groups, strict=True) if h == g}) > 1 for g in groups]
        assert nonzero == mixed
    else:
        assert all(nonzero)


# ------------------------------------------------------------------------------------------------ extreme scores


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
@pytest.mark.parametrize("ratio", [1e2, 1e3, 1e4])
@pytest.mark.parametrize("tau", [0.5, 0.01])
@pytest.mark.parametrize("method", sorted(REAL_METHODS))
def test_real_family_at_extreme_s_bar_over_tau(method, tau, ratio, dtype):
    """``|s_bar| / tau`` up to 1e4: finite loss, gradients equal to the closed form, each rollout's weight in
    ``[0, 1/tau]`` and each token's at most ``1 / (tau |o|)``."""
    sign = np.array([1, -1, -1, 1, 1, -1, -1, 1], dtype=float)
    batch = make_batch([1, 1, 0, 0, 1, 0, 1, 0], [0, 0, 0, 0, 1, 1, 1, 1], sign * ratio * tau, dtype=dtype)
    res, grad, closed = run_objective(method, batch, tau=tau)
    assert_all_finite(res, grad, closed, batch["mask"])
    w = closed.rollout_weight
    assert ((w >= 0) & (w <= 1 / tau * (1 + 1e-6))).all()
    assert (grad.abs() <= 1 / (tau * 5) + 1e-6).all()
    # the hardest rollouts (correct with s_bar << 0, wrong with s_bar >> 0) get the largest weight, 1/tau
    wrong_way = ((batch["rewards"] > 0.5) & (torch.as_tensor(sign) < 0)) | (
        (batch["rewards"] < 0.5) & (torch.as_tensor(sign) > 0)
    )
    if method != "real_no_anchor":
        torch.testing.assert_close(w[wrong_way], torch.full_like(w[wrong_way], 1 / tau), rtol=1e-3, atol=0)


@pytest.mark.parametrize("dtype", TORCH_DTYPES, ids=str)
@pytest.mark.parametrize("method", sorted(CLIP_METHODS))
def test_clip_family_at_extreme_log_ratios(method, dtype):
    """``|s| = 5000``: the defaults keep ``e^s`` finite (``log_ratio_cap``, or a clipped weight computed in log
    space); without a cap the loss overflows and the objective refuses it, naming ``log_ratio_cap``."""
    batch = make_batch([1, 0, 1, 0], [0, 0, 1, 1], [5000.0, 5000.0, -5000.0, -5000.0], dtype=dtype)
    res, grad, closed = run_objective(method, batch)
    assert_all_finite(res, grad, closed, batch["mask"])
    if "log_ratio_cap" not in SPECS[method].hparam_names():
        return  # nothing to switch off: the weight itself is bounded
    batch = make_batch([1, 0, 1, 0], [0, 0, 1, 1], [5000.0, 5000.0, -5000.0, -5000.0], dtype=dtype)
    with pytest.raises(ValueError, match=r"the loss is not finite.*set log_ratio_cap"):
        run_objective(method, batch, log_ratio_cap=None)


@pytest.mark.parametrize("method", ["grpo", "real"])
def test_a_kl_term_that_overflows_is_refused_and_named(method):
    """The k3 KL term ``e^d - d - 1`` with ``d = log pi_ref - log pi_theta`` overflows float32 beyond d = 88."""
    batch = make_batch([1, 0, 1, 0], [0, 0, 1, 1], [-100.0, 0.0, 0.0, 0.0], dtype=torch.float32)
    batch["ref_logp"] = batch["old_logp"].clone()  # the policy fell 100 nats below the reference on rollout 0
    with pytest.raises(ValueError, match=r"the KL penalty is not finite .*largest d = 100"):
        run_objective(method, batch, kl_beta=0.001)


def test_paper_forms_at_their_limits():
    """Elementwise paper forms: REAL's weight is bounded by 1/tau for any s_bar and log C (infinities included);
    GRPO's Eq. 3 is unbounded, so ``grpo_token_weight`` returns +inf where ``|A| e^s`` overflows float64
    (s > 709), and Fig. 1 refuses a range that would reach it."""
    s = np.array([-np.inf, -1e300, -1e4, 0.0, 1e4, 1e300, np.inf])
    for positive in (True, False):
        for log_c in (0.0, 50.0, 1e300):
            w = real_weight(s, log_c, 0.5, positive)
            assert np.isfinite(w).all() and ((w >= 0) & (w <= 2.0)).all()
        w = real_weight(s[1:-1], np.inf, 0.5, positive)  # an infinite C with a finite s_bar: weight 0
        assert (w == 0).all()
    assert real_weight(np.array([np.inf]), 0.0, 0.5, False)[0] == 2.0  # a wrong rollout at s_bar=+inf: 1/tau
    assert real_weight(np.array([0.0]), np.inf, 0.5, True)[0] == 0.0  # infinite C: no weight
    w = grpo_token_weight(np.array([700.0, 710.0]), -1.0)
    assert np.isfinite(w[0]) and w[1] == np.inf
    with pytest.raises(ValueError, match="overflows float64"):
        Fig1Params(s_min=-1.0, s_max=710.0)
    for name in ("tau", "advantage", "s_min", "c_pos"):
        with pytest.raises(ValueError, match=f"{name} must be a finite number"):
            Fig1Params(**{name: math.nan})
    assert_plotted_finite(build_fig1(Fig1Params(s_min=-700.0, s_max=700.0)))


# ------------------------------------------------------------------------------------------------ logs


def test_writer_refuses_inf_and_writes_nan_only_as_null(tmp_path):
    """``RunWriter``: NaN becomes null only in the nullable columns and in extra columns; +-inf is refused
    everywhere, nullable columns included (an infinite log C is the caller's to map: the trainer and the
    engines' records log it as null)."""
    roll = {f.name: [0] * 2 for f in SCHEMAS["rollouts"]}
    roll.update(prompt=["p", "p"], response=["", ""], answer=["1", "1"], used=[True, True])
    with pytest.raises(RunFormatError, match=r"rollouts, row 1, field 'log_c': non-finite value inf"):
        to_table("rollouts", {**roll, "log_c": [0.0, math.inf]})
    with pytest.raises(RunFormatError, match=r"rollouts, row 0, field 's_bar': non-finite value nan"):
        to_table("rollouts", {**roll, "s_bar": [math.nan, 0.0]})
    with pytest.raises(RunFormatError, match=r"rollouts, row 1, field 'extra': non-finite value -inf"):
        to_table("rollouts", {**roll, "extra": np.array([0.0, -math.inf])})
    t = to_table("rollouts", {**roll, "log_c": [math.nan, 1.0], "extra": [math.nan, 2.0]})
    assert t.column("log_c").null_count == 1 and t.column("extra").null_count == 1
    w = RunWriter.create(tmp_path / "r", name="r", method="real", config={}, env={})
    met = {f.name: 0.0 for f in SCHEMAS["metrics"]} | {"val_pass1": math.nan, "val_pass_at_k": math.nan}
    tok = {f.name: [] for f in SCHEMAS["tokens"]}
    w.write_step(1, met, {**roll, "log_c": [math.nan, 1.0]}, tok)
    assert_no_nan_in_files(tmp_path / "r")


def assert_no_nan_in_files(run_dir) -> dict[str, int]:
    """Every float value of every step file is finite or null, and nulls sit only in the nullable columns and
    the extra columns; returns the null counts."""
    nulls: dict[str, int] = {}
    run = open_run(run_dir)
    for table in ("metrics", "rollouts", "tokens"):
        for path in run.files(table):
            t = pq.read_table(path)
            for name in t.column_names:
                col = t.column(name)
                if pa.types.is_floating(col.type):
                    values = col.to_numpy(zero_copy_only=False)
                    present = values[~pd.isna(values)] if col.null_count else values
                    assert np.isfinite(present.astype(float)).all(), (path, name)
                    assert not np.isnan(values).any() or col.null_count == np.isnan(values).sum(), (
                        path,
                        name,
                    )
                if col.null_count:
                    assert (table, name) in NULLABLE or name not in SCHEMAS[table].names, (path, name)
                    nulls[f"{table}.{name}"] = nulls.get(f"{table}.{name}", 0) + col.null_count
    return nulls


def test_edge_runs_log_nothing_non_finite(edge_suite):
    """All-correct, all-wrong, one-rollout groups, |s_bar|/tau = 1e4 and one-token responses, through the
    trainer's logging code: the files hold no NaN or inf; the only nulls are the documented ones."""
    for run_dir in edge_suite:
        nulls = assert_no_nan_in_files(run_dir)
        method = open_run(run_dir).method
        assert nulls.get("metrics.val_pass1") == 3  # steps without validation
        if method in CLIP_METHODS:
            assert "rollouts.log_c" in nulls and "rollouts.advantage" not in nulls
        else:
            assert "rollouts.advantage" in nulls
            # log C is null exactly where it is infinite: the no-anchor variant's one-label groups
            assert ("rollouts.log_c" in nulls) == (method == "real_no_anchor")


@pytest.mark.parametrize("method", METHODS)
def test_the_trainer_logs_all_wrong_steps_without_nan(method, grader, tmp_path):
    """A real training run whose every group is all wrong (an untrained model): finite metrics, zero policy
    gradient, and for REAL w/o anchor a null ``log_c`` (C is infinite there), never NaN or inf."""
    cfg = small_config(
        method, tmp_path / "cache", warmstart=False, steps=2, batch_prompts=2, group_size=2, minibatch_prompts=1,
        max_new_tokens=8, val_every=2, val_prompts=2, val_k=1, n_train=16, n_val=4, n_test=4, n_sft=4,
    )  # fmt: skip
    cfg.validate()
    out = tmp_path / "run"
    Trainer(cfg, out, grader=grader, log=lambda _: None).run()
    run = open_run(out)
    assert run.status()["state"] == "finished" and run.steps() == [1, 2]
    rol = run.rollouts()
    assert (rol.reward == 0).all() and (rol.weight == 0).all() and not rol.used.any()
    nulls = assert_no_nan_in_files(out)
    if method == "real_no_anchor":
        assert nulls["rollouts.log_c"] == len(rol)
    met = run.metrics()
    assert met.val_pass1.isna().tolist() == [True, False]
    numeric = met.drop(columns=["val_pass1"]).select_dtypes("number")
    assert np.isfinite(numeric.to_numpy(dtype=float)).all()
    assert (run.tokens().grad == 0).all()  # the policy-gradient part (GRPO's KL term is logged apart)


class NaNAtStep(Trainer):
    """The trainer with one injected fault: at step ``bad_step`` the policy's logits turn NaN during its
    updates (as broken weights or an overflowing kernel would give)."""

    bad_step = 2

    def setup(self) -> None:
        super().setup()

        def poison(module, args, output):
            if module.training and self._step == self.bad_step:
                return output + math.nan
            return output

        # on the output head: the scorer runs the decoder and the head itself (prompt sharing, logit chunks), not
        # always model(...), so a hook on the whole model would not see every update's logits
        self.model.get_output_embeddings().register_forward_hook(poison)


def test_a_nan_from_the_model_stops_the_run_cleanly_and_resume_goes_on(grader, tmp_path):
    """NaN log-probs at an update are refused by the objective: the run stops as ``failed`` naming the tensor,
    the steps before it and their checkpoint are intact, and ``--resume`` (without the fault) finishes the run."""
    cfg = small_config(
        "real", tmp_path / "cache", warmstart=False, steps=3, batch_prompts=2, group_size=2, minibatch_prompts=1,
        max_new_tokens=8, val_every=0, val_prompts=2, n_train=16, n_val=4, n_test=4, n_sft=4, save_every=1,
    )  # fmt: skip
    cfg.validate()
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"logp holds \d+ NaN/inf value\(s\) on response tokens"):
        NaNAtStep(cfg, out, grader=grader, log=lambda _: None).run()
    run = open_run(out)
    status = run.status()
    assert status["state"] == "failed" and status["last_step"] == 1 and "logp holds" in status["error"]
    assert run.steps() == [1]
    assert_no_nan_in_files(out)
    Trainer(cfg, out, resume=True, grader=grader, log=lambda _: None).run()
    run = open_run(out)
    assert run.steps() == [1, 2, 3] and run.status()["state"] == "finished"
    assert_no_nan_in_files(out)


def test_the_trainer_refuses_groups_of_one(capsys):
    assert train_main(["train", "--method", "real", "--group-size", "1", "--out", "/nonexistent/x"]) == 2
    assert "--group-size 1" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ studies


def assert_plotted_finite(fig) -> int:
    """No artist of ``fig`` carries a NaN or inf: lines, collections (bands, scatters), bars, images, texts.
    Returns the number of data points checked."""
    points = 0
    for ax in fig.axes:
        for a in ax.get_children():
            if isinstance(a, Line2D):
                xy = np.asarray(a.get_xydata(), dtype=float)
                assert np.isfinite(xy).all(), (ax.get_title(), a.get_label())
                points += len(xy)
            elif isinstance(a, Collection):
                offsets = np.asarray(a.get_offsets(), dtype=float)
                assert np.isfinite(offsets).all(), (ax.get_title(), a.get_label())
                for p in a.get_paths():
                    assert np.isfinite(p.vertices).all(), (ax.get_title(), a.get_label())
                    points += len(p.vertices)
            elif isinstance(a, Rectangle):
                assert np.isfinite([a.get_x(), a.get_y(), a.get_width(), a.get_height()]).all()
            elif isinstance(a, AxesImage):
                assert np.isfinite(np.asarray(a.get_array(), dtype=float)).all()
            elif isinstance(a, Text):
                assert not any(w in a.get_text().lower().split() for w in ("nan", "inf", "-inf")), (
                    a.get_text()
                )
    return points


# statistic -> the columns documented as NaN where undefined (everything else must be finite)
STAT_NAN_COLUMNS = {
    "token_intervals": set(),
    "clip_discards": set(),
    "gradient_allocation": {"top_token_share", "top_rollout_share", "gini_token", "gini_rollout",
                            "corr_token_correct", "corr_token_wrong", "corr_rollout_correct", "corr_rollout_wrong"},
    "real_weights": {"log_c"},
    "training_dynamics": set(),
    "final_metric": set(),
}  # fmt: skip


def test_statistics_on_edge_runs_are_finite_or_documented_nan(edge_suite):
    for name, allowed in STAT_NAN_COLUMNS.items():
        df = stats.collect(getattr(stats, name), edge_suite)
        assert len(df), name
        for col in df.select_dtypes("number").columns:
            if col not in allowed:
                assert np.isfinite(df[col].to_numpy(dtype=float)).all(), (name, col)
    alloc = stats.collect(stats.gradient_allocation, edge_suite)
    # NaN exactly where undefined: a step whose rollouts carry no weight at all (every token clipped at
    # |s| = 5000 in the clip family's step 5)
    undefined = alloc[alloc.top_token_share.isna()]
    assert len(undefined) and set(undefined.step) == {5}
    assert set(undefined.run) == {open_run(p).name for p in edge_suite if open_run(p).method in CLIP_METHODS}
    rw = stats.collect(stats.real_weights, [p for p in edge_suite if open_run(p).method in REAL_METHODS])
    assert rw.log_c.isna().any() and set(rw[rw.log_c.isna()].run) == {"real_no_anchor-s0"}
    comp = stats.c_by_composition(rw)
    assert np.isfinite(comp.select_dtypes("number").to_numpy(dtype=float)).all()


@pytest.mark.parametrize("figure", list(RUN_FIGURES))
def test_figures_from_edge_runs_plot_nothing_non_finite(edge_suite, figure):
    f = RUN_FIGURES[figure]
    fig = f.build(f.data(edge_suite, f.params()), f.params())
    assert assert_plotted_finite(fig) > 0 or figure == "table4"
