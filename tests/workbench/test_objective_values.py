"""Loss values against plain, loop-based reimplementations of the equations, and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import random_batch
from workbench.methods import METHODS, resolve_hparams
from workbench.objectives import OBJECTIVES, get_objective


def _groups(b):
    out = {}
    for i, g in enumerate(b.group_ids.tolist()):
        out.setdefault(g, []).append(i)
    return out


def _s(b):
    s = torch.where(b.mask, b.logp.detach() - b.old_logp, torch.zeros(()))
    return s, s.sum(1) / b.mask.sum(1)


def naive_real(b, tau=0.5, variant="real", filt="mixed", norm="prompts"):
    """Eq. 8 / Eq. 11 / no-anchor per group as loops with raw exp (fine for moderate s), summed over the kept
    groups and divided by ``norm``: prompts, rollouts of the kept groups, kept groups, or 1."""
    _, s_bar = _s(b)
    groups = _groups(b)
    total, used, used_rollouts = 0.0, 0, 0
    for idx in groups.values():
        pos = [float(s_bar[i]) for i in idx if b.rewards[i] == 1]
        neg = [float(s_bar[i]) for i in idx if b.rewards[i] == 0]
        if filt == "mixed" and not (pos and neg):
            continue
        used += 1
        used_rollouts += len(idx)
        if variant == "real":
            total += math.log(1 + sum(math.exp(-x / tau) for x in pos)) + math.log(
                1 + sum(math.exp(x / tau) for x in neg)
            )
        elif variant == "bce":
            total += sum(math.log(1 + math.exp(-x / tau)) for x in pos) + sum(
                math.log(1 + math.exp(x / tau)) for x in neg
            )
        else:
            total += math.log(1 + sum(math.exp(x / tau) for x in neg) * sum(math.exp(-x / tau) for x in pos))
    denom = {"prompts": len(groups), "rollouts": max(used_rollouts, 1), "used": max(used, 1), "sum": 1}[norm]
    return total / denom


def naive_ppo(b, eps_low, eps_high, agg, seq=False):
    s, s_bar = _s(b)
    groups = _groups(b)
    adv = torch.zeros(len(b.rewards), dtype=torch.float64)
    for idx in groups.values():
        r = b.rewards[idx]
        std = r.std() if len(idx) > 1 else torch.tensor(0.0)
        adv[idx] = 0.0 if len(idx) == 1 else (r - r.mean()) / (std + 1e-6)
    per_seq, tok_sum, n_tok = [], 0.0, 0
    for i in range(len(adv)):
        n = int(b.mask[i].sum())
        terms = []
        for t in range(n):
            rho = math.exp(float(s_bar[i] if seq else s[i, t]))
            a = float(adv[i])
            terms.append(max(-a * rho, -a * min(max(rho, 1 - eps_low), 1 + eps_high)))
        per_seq.append(sum(terms) / n)
        tok_sum += sum(terms)
        n_tok += n
    return tok_sum / n_tok if agg == "token-mean" else sum(per_seq) / len(per_seq)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    ("method", "variant"), [("real", "real"), ("real_bce", "bce"), ("real_no_anchor", "no_anchor")]
)
@pytest.mark.parametrize(
    ("filt", "norm"),
    [("mixed", "prompts"), ("mixed", "rollouts"), ("all", "rollouts"), ("all", "used"), ("all", "sum")],
)
def test_real_family_value(seed, method, variant, filt, norm):
    b = random_batch(seed)
    got = OBJECTIVES[method](*b.args(), group_filter=filt, normalize=norm).loss.item()
    assert got == pytest.approx(naive_real(b, 0.5, variant, filt, norm), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("method", "variant", "norm"), [("real", "real", "prompts"),
                         ("real_no_anchor", "no_anchor", "prompts"), ("real_bce", "bce", "rollouts")])  # fmt: skip
def test_real_family_defaults_follow_the_authors_code(seed, method, variant, norm):
    """REAL and REAL w/o anchor: sum over the mixed groups / prompts; REAL w/ BCE: mean over their rollouts."""
    b = random_batch(seed)
    got = OBJECTIVES[method](*b.args()).loss.item()
    assert got == pytest.approx(naive_real(b, 0.5, variant, "mixed", norm), rel=1e-10, abs=1e-12)


def _one_token_batch(s_bars, rewards, groups):
    """Rollouts of one token each, so ``s_bar = s`` (old log-prob -1)."""
    s = torch.tensor(s_bars, dtype=torch.float64).unsqueeze(1)
    old = torch.full_like(s, -1.0)
    logp = (old + s).requires_grad_(True)
    mask = torch.ones_like(s, dtype=torch.bool)
    r = torch.tensor(rewards, dtype=torch.float64)
    return logp, old, mask, r, torch.tensor(groups)


def _softplus(x):
    return math.log1p(math.exp(x))


def test_real_bce_by_hand_both_normalisations():
    """Three prompts, tau 0.5: two mixed groups (5 rollouts) and an all-correct group, which is dropped.

    Per rollout, BCE(x, r) with x = s_bar / tau is ``softplus(-x)`` for r = 1 and ``softplus(x)`` for r = 0.
    The authors' code (default, ``rollouts``) averages it over the 5 rollouts of the mixed groups; the paper's
    Eq. 11 sums it per group, and ``prompts`` divides that by the 3 prompts.
    """
    s_bars = [0.2, -0.4, 0.1, 0.3, -0.2, 0.5, 0.7]
    rewards = [1, 0, 1, 0, 0, 1, 1]
    groups = [0, 0, 1, 1, 1, 2, 2]
    args = _one_token_batch(s_bars, rewards, groups)
    # group 0: x = 0.4 (correct), -0.8 (wrong); group 1: x = 0.2 (correct), 0.6, -0.4 (wrong)
    kept = [_softplus(-0.4), _softplus(-0.8), _softplus(-0.2), _softplus(0.6), _softplus(-0.4)]
    authors = OBJECTIVES["real_bce"](*args).loss.item()
    assert authors == pytest.approx(sum(kept) / 5, rel=1e-12)
    assert OBJECTIVES["real_bce"](*args, normalize="rollouts").loss.item() == authors
    eq11 = OBJECTIVES["real_bce"](*args, normalize="prompts").loss.item()
    assert eq11 == pytest.approx(sum(kept) / 3, rel=1e-12)
    # the authors' call itself: torch's BCE with reduction='mean' on the mixed groups' rollouts
    x = torch.tensor(s_bars[:5], dtype=torch.float64) / 0.5
    torch_mean = torch.nn.functional.binary_cross_entropy_with_logits(x, args[3][:5], reduction="mean")
    assert authors == pytest.approx(float(torch_mean), rel=1e-12)


@pytest.mark.parametrize("norm", ["rollouts", "prompts", "used", "sum"])
@pytest.mark.parametrize("method", ["real", "real_bce", "real_no_anchor"])
def test_no_mixed_group_gives_zero_loss_and_gradient(method, norm):
    """A mini-batch whose groups all hold one label: loss 0 and gradient 0 under every normalisation, no NaN."""
    logp, old, mask, r, ids = _one_token_batch([0.3, -0.2, 0.1, 0.4], [1, 1, 0, 0], [0, 0, 1, 1])
    res = OBJECTIVES[method](logp, old, mask, r, ids, normalize=norm)
    (g,) = torch.autograd.grad(res.loss, logp)
    assert res.loss.item() == 0.0 and (g == 0).all()
    assert res.metrics["groups_used"] == 0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("method", ["grpo", "dapo", "gspo"])
def test_clip_family_value(seed, method):
    hp = resolve_hparams(method, {})
    b = random_batch(seed, s_scale=3e-4 if method == "gspo" else 0.3)
    got = OBJECTIVES[method](*b.args(), kl_beta=0.0).loss.item()
    want = naive_ppo(b, hp.eps_low, hp.eps_high, hp.loss_agg, seq=method == "gspo")
    assert got == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_first_minibatch_has_zero_ratio_statistics():
    """At s = 0 (the first mini-batch of a step) nothing is clipped and the KL estimate is 0."""
    b = random_batch(0)
    logp = b.old_logp.clone().requires_grad_(True)
    for method in METHODS:
        hp = {"kl_beta": 0.0} if method == "grpo" else {}
        m = OBJECTIVES[method](logp, b.old_logp, b.mask, b.rewards, b.group_ids, **hp).metrics
        assert m["approx_kl"] == 0.0 and m.get("clip_frac", 0.0) == 0.0


def test_metrics_are_floats_and_count_groups():
    b = random_batch(0, sizes=(4, 4, 1, 3))
    b.rewards[:] = torch.tensor([1, 0, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0], dtype=torch.float64)[: len(b.rewards)]
    for method in METHODS:
        hp = {"kl_beta": 0.0} if method == "grpo" else {}
        m = OBJECTIVES[method](*b.args(), **hp).metrics
        assert all(isinstance(v, float) for v in m.values())
        assert m["groups"] == 4
        assert m["groups_used"] + m["groups_skipped"] == 4


class TestBadInput:
    def test_shape_mismatch(self, batch):
        with pytest.raises(ValueError, match="old_logp has shape"):
            OBJECTIVES["real"](batch.logp, batch.old_logp[:, :-1], batch.mask, batch.rewards, batch.group_ids)
        with pytest.raises(ValueError, match="rewards must be a 1-D tensor"):
            OBJECTIVES["real"](batch.logp, batch.old_logp, batch.mask, batch.rewards[:-1], batch.group_ids)

    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
    def test_non_finite_logp_on_response_token(self, batch, bad):
        logp = batch.logp.detach().clone()
        logp[0, 0] = bad
        with pytest.raises(ValueError, match=r"logp holds 1 NaN/inf value\(s\) on response tokens"):
            OBJECTIVES["dapo"](logp, batch.old_logp, batch.mask, batch.rewards, batch.group_ids)

    def test_nan_on_padding_is_ignored(self, batch):
        assert torch.isnan(batch.logp[~batch.mask]).all()
        res = OBJECTIVES["real"](*batch.args())
        (g,) = torch.autograd.grad(res.loss, batch.logp)
        assert torch.isfinite(res.loss) and torch.isfinite(g).all()

    def test_empty_response(self, batch):
        mask = batch.mask.clone()
        mask[2] = False
        with pytest.raises(ValueError, match="have no token"):
            OBJECTIVES["grpo"](batch.logp, batch.old_logp, mask, batch.rewards, batch.group_ids, kl_beta=0.0)

    def test_non_binary_rewards_for_real(self, batch):
        r = batch.rewards.clone()
        r[0] = 0.5
        with pytest.raises(ValueError, match="binary rewards"):
            OBJECTIVES["real"](batch.logp, batch.old_logp, batch.mask, r, batch.group_ids)
        OBJECTIVES["grpo"](
            batch.logp, batch.old_logp, batch.mask, r, batch.group_ids, kl_beta=0.0
        )  # fine for GRPO

    def test_unknown_method_and_hparams(self, batch):
        with pytest.raises(ValueError, match="unknown method 'ppo'"):
            get_objective("ppo")
        with pytest.raises(ValueError, match=r"unknown hyper-parameter.*epsilon"):
            OBJECTIVES["grpo"](*batch.args(), epsilon=0.1)
        with pytest.raises(ValueError, match="tau must be"):
            OBJECTIVES["real"](*batch.args(), tau=0.0)
        with pytest.raises(ValueError, match="clip_mode"):
            OBJECTIVES["dapo"](*batch.args(), clip_mode="sideways")

    def test_kl_to_reference_needs_reference(self, batch):
        with pytest.raises(ValueError, match="needs ref_logp"):
            OBJECTIVES["grpo"](*batch.args())
        OBJECTIVES["grpo"](*batch.args(), ref_logp=batch.ref_logp)

    def test_float_group_ids(self, batch):
        with pytest.raises(ValueError, match="group_ids must be integers"):
            OBJECTIVES["real"](
                batch.logp, batch.old_logp, batch.mask, batch.rewards, batch.group_ids.double()
            )

    def test_overflowing_ratio_without_cap_is_an_error_not_inf(self, batch):
        logp = torch.where(batch.mask, batch.old_logp + 800.0, batch.logp.detach())
        r = torch.zeros_like(batch.rewards)
        r[::2] = 1
        with pytest.raises(ValueError, match="loss is not finite"):
            OBJECTIVES["dapo"](logp, batch.old_logp, batch.mask, r, batch.group_ids, log_ratio_cap=None)
        res = OBJECTIVES["dapo"](logp, batch.old_logp, batch.mask, r, batch.group_ids)
        assert torch.isfinite(res.loss)
