"""Fig. 1 for every method: the closed-form weight curve and the same weight taken by autograd.

``curve_weight(method, s, positive, p)`` evaluates the paper's elementwise closed forms from
``workbench.closed_forms``: GRPO/DAPO ``|A| e^{s_t} I_clip`` (Eq. 3), GSPO ``|A| e^{s_bar} I_clip``, and for the
REAL family ``(1/tau) / (1 + C e^{+-s_bar/tau})`` (Eq. 9) with

- REAL:      ``C = C+`` (correct) or ``C-`` (wrong), as given (``>= 1``: the anchor contributes the 1);
- BCE:       ``C = 1``;
- no anchor: ``C = (C_REAL - 1) + 1 / M``, the same-class mass without the anchor plus the inverse of the other
  class's mass ``M = sum_{other class} e^{-+s/tau}`` (``M = 1``: one other-class rollout at ``s_bar = 0``,
  where no-anchor coincides with REAL).

``autograd_weight`` gets the same numbers without any closed form: for each ``s`` it builds a small group of
one-token rollouts whose quantities match ``p`` (a rollout with ``s_t = s_bar = s``; rewards whose group-normalised
advantage is exactly ``+-|A|``; other rollouts whose ``e^{-+s/tau}`` sum to ``C - 1`` and ``M``), runs the real
objective from ``workbench.objectives`` and differentiates it with torch autograd. The clip family's aggregation
divides each token's gradient by the number of rollouts ``B`` (one token each); the point is ``|dL/dlogp| * B``.
The REAL family uses ``normalize="sum"``, so the point is ``|dL/dlogp|`` itself. KL terms are switched off
(``kl_beta = 0``), as in Fig. 1.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from workbench.methods import DEFAULTS, SPECS, CurveScenario, HParams, check_method, resolve_hparams
from workbench.objectives import OBJECTIVES


@dataclass(frozen=True)
class CurveParams:
    """Everything the Fig. 1 curves depend on: the scenario (``|A|``, ``C+``, ``C-``, ``M``) and the methods'
    hyper-parameters. ``eps_*`` are GRPO's; DAPO and GSPO keep their own ranges; ``clip_mode`` applies to every
    method that has one and ``tau`` to every method that has one; ``overrides`` holds ``(method, name, value)``
    for any other hyper-parameter of any method. Unset, each method draws with its spec's defaults."""

    eps_low: float = DEFAULTS["grpo"].eps_low
    eps_high: float = DEFAULTS["grpo"].eps_high
    advantage: float = 1.0  # |A|: A = +|A| for correct rollouts, -|A| for wrong ones
    clip_mode: str = "vanilla"
    tau: float = DEFAULTS["real"].tau
    c_pos: float = 4.0
    c_neg: float = 4.0
    other_class_mass: float = 1.0  # M of the no-anchor variant
    dapo_eps_low: float = DEFAULTS["dapo"].eps_low
    dapo_eps_high: float = DEFAULTS["dapo"].eps_high
    gspo_eps_low: float = DEFAULTS["gspo"].eps_low
    gspo_eps_high: float = DEFAULTS["gspo"].eps_high
    overrides: tuple[tuple[str, str, object], ...] = ()

    def __post_init__(self) -> None:
        self.scenario()  # validates |A|, C+, C-, M
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        for lo, hi in (
            (self.eps_low, self.eps_high),
            (self.dapo_eps_low, self.dapo_eps_high),
            (self.gspo_eps_low, self.gspo_eps_high),
        ):
            if not (0 <= lo < 1 and hi >= 0):
                raise ValueError(f"need 0 <= eps_low < 1 and eps_high >= 0, got {lo}, {hi}")
        for method, name, value in self.overrides:
            resolve_hparams(method, {name: value})

    def scenario(self) -> CurveScenario:
        return CurveScenario(self.advantage, self.c_pos, self.c_neg, self.other_class_mass)

    def hparams(self, method: str) -> HParams:
        """``method``'s hyper-parameters for the curves (spec defaults with this figure's settings applied)."""
        names = set(SPECS[check_method(method)].hparam_names())
        over: dict[str, object] = {}
        if "clip_mode" in names:
            over["clip_mode"] = self.clip_mode
        if "tau" in names:
            over["tau"] = self.tau
        eps = {
            "grpo": (self.eps_low, self.eps_high),
            "dapo": (self.dapo_eps_low, self.dapo_eps_high),
            "gspo": (self.gspo_eps_low, self.gspo_eps_high),
        }
        if method in eps:
            over["eps_low"], over["eps_high"] = eps[method]
        over |= {name: value for m, name, value in self.overrides if m == method}
        return resolve_hparams(method, over)


def curve_weight(method: str, s: np.ndarray, positive: bool, p: CurveParams) -> np.ndarray:
    """Closed-form ``|W|`` of ``method`` at log-ratios ``s`` (``s_t`` for a token-level ratio, ``s_bar`` for a
    sequence-level one): the spec's ``curve``."""
    spec = SPECS[check_method(method)]
    return np.asarray(
        spec.curve(np.asarray(s, dtype=float), positive, p.hparams(method), p.scenario()), float
    )


def advantage_rewards(advantage: float) -> list[float]:
    """Rewards of a group whose first rollout gets group-normalised advantage exactly ``advantage``.

    The advantage vector is the rewards standardised with the unbiased std, so it has mean 0 and sum of squares
    ``G - 1``; the first entry can reach ``|A|`` only if ``(G - 1)^2 >= A^2 G``. We take the smallest such
    ``G >= 3`` and rewards ``z = [A, b, c, ..., c]`` solving ``sum z = 0`` and ``sum z^2 = G - 1``; they are
    already standardised, so with ``adv_eps = 0`` the objective computes ``A`` for the first rollout.
    """
    a = float(advantage)
    g = 3
    while (g - 1) ** 2 < a * a * g * (1 + 1e-9):
        g += 1
    n = g - 2  # rollouts with value c
    r = (g - 1) - a * a
    # (a + n c)^2 + n c^2 = r  <=>  n (n + 1) c^2 + 2 a n c + a^2 - r = 0
    qa, qb, qc = n * (n + 1), 2 * a * n, a * a - r
    c = (-qb + math.sqrt(max(qb * qb - 4 * qa * qc, 0.0))) / (2 * qa)
    b = -a - n * c
    return [a, b] + [c] * n


def _one_token_batch(
    s_rows: list[list[float]], rewards_rows: list[list[float]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Groups of one-token rollouts with log-ratios ``s_rows[g]`` and rewards ``rewards_rows[g]``."""
    s = torch.tensor([x for row in s_rows for x in row], dtype=torch.float64).unsqueeze(1)
    rewards = torch.tensor([x for row in rewards_rows for x in row], dtype=torch.float64)
    ids = torch.tensor([g for g, row in enumerate(s_rows) for _ in row], dtype=torch.long)
    old = torch.full_like(s, -20.0)
    logp = (old + s).requires_grad_(True)
    return logp, old, torch.ones_like(s, dtype=torch.bool), rewards, ids


def _real_group(s: float, positive: bool, p: CurveParams) -> tuple[list[float], list[float]]:
    """One group: the rollout of interest first, then same-class rollouts of mass ``C - 1``, then the other class
    with mass ``M`` (at least one, so that the group mixes labels)."""
    tau = p.tau
    c_real = p.c_pos if positive else p.c_neg
    sign = 1.0 if positive else -1.0  # a correct rollout's mass term is e^{-s/tau}, a wrong one's e^{+s/tau}
    label, other = (1.0, 0.0) if positive else (0.0, 1.0)
    s_row, r_row = [s], [label]
    if c_real - 1.0 > 0:
        s_row.append(-sign * tau * math.log(c_real - 1.0))
        r_row.append(label)
    s_row.append(sign * tau * math.log(p.other_class_mass))
    r_row.append(other)
    return s_row, r_row


def _safe_points(method: str, s: np.ndarray, p: CurveParams) -> np.ndarray:
    """Drop points within 1e-6 of a kink of the loss (a clip boundary: autograd splits ties)."""
    keep = np.ones_like(s, dtype=bool)
    for x in SPECS[method].kinks(p.hparams(method)):
        keep &= np.abs(s - x) > 1e-6
    return s[keep]


def autograd_weight(
    method: str, s: np.ndarray, positive: bool, p: CurveParams
) -> tuple[np.ndarray, np.ndarray]:
    """``(s_used, |W|)``: the weight at each ``s`` by autograd through ``OBJECTIVES[method]`` on a constructed batch.

    ``s_used`` is ``s`` without points within 1e-6 of a clip boundary (see ``_safe_points``).
    """
    check_method(method)
    s = _safe_points(method, np.asarray(s, dtype=float), p)
    if s.size == 0:
        return s, s.copy()
    spec = SPECS[method]
    hp = dataclasses.asdict(p.hparams(method))
    if spec.family == "clip":
        a = p.advantage if positive else -p.advantage
        rewards = advantage_rewards(a)
        s_rows = [[float(x)] + [0.0] * (len(rewards) - 1) for x in s]
        r_rows = [rewards] * len(s)
        hp |= {k: 0.0 for k in ("kl_beta", "adv_eps") if k in hp}
    else:
        rows = [_real_group(float(x), positive, p) for x in s]
        s_rows, r_rows = [r[0] for r in rows], [r[1] for r in rows]
        hp |= {"normalize": "sum", "group_filter": "mixed", "kl_beta": 0.0}
    logp, old, mask, rewards_t, ids = _one_token_batch(s_rows, r_rows)
    res = OBJECTIVES[method](logp, old, mask, rewards_t, ids, **hp)
    (grad,) = torch.autograd.grad(res.loss, logp)
    firsts = torch.tensor([0, *list(np.cumsum([len(r) for r in s_rows])[:-1])], dtype=torch.long)
    g = grad[firsts, 0].abs().numpy()
    if spec.family == "clip":
        g = g * logp.shape[0]  # undo the 1/B of the aggregation (one token per rollout)
    return s, g


def curve_table(
    methods: list[str], p: CurveParams, s_min: float = -2.0, s_max: float = 2.0, points: int = 401
) -> dict[str, np.ndarray]:
    """Closed-form curves of ``methods`` on a common grid, both panels: keys ``s`` and ``{method}_{pos|neg}``."""
    s = np.linspace(s_min, s_max, points)
    out = {"s": s}
    for m in methods:
        for positive, tag in ((True, "pos"), (False, "neg")):
            out[f"{m}_{tag}"] = curve_weight(m, s, positive, p)
    return out


def check_points(
    methods: list[str], p: CurveParams, s_min: float = -2.0, s_max: float = 2.0, points: int = 21
) -> list[dict[str, float | str | bool]]:
    """Autograd points and the closed form at the same ``s``, one record per method, panel and point."""
    s = np.linspace(s_min, s_max, points)
    records: list[dict[str, float | str | bool]] = []
    for m in methods:
        for positive in (True, False):
            s_used, w_auto = autograd_weight(m, s, positive, p)
            w_cf = curve_weight(m, s_used, positive, p)
            for x, a, c in zip(s_used, w_auto, w_cf, strict=True):
                records.append(
                    {
                        "method": m,
                        "correct": positive,
                        "s": float(x),
                        "autograd": float(a),
                        "closed_form": float(c),
                    }
                )
    return records


def method_overview(p: CurveParams | None = None, s_max: float = 5.0) -> list[dict[str, object]]:
    """One row per registered method, for the Learn page's comparison: label, family, which log-ratio its weight
    reads, the weight in symbols, its defaults, and three numbers from its closed-form curve under ``p``:
    the weight of a correct rollout at ``s = -1`` against ``s = 0`` (does a low-probability correct token get a
    stronger push?), and the largest weight of a wrong rollout over ``s`` in ``[-s_max, s_max]`` (is it bounded?)."""
    p = p or CurveParams()
    rows: list[dict[str, object]] = []
    grid = np.linspace(-s_max, s_max, 201)
    for name, spec in SPECS.items():
        hp = p.hparams(name)
        w_pos = curve_weight(name, np.array([-1.0, 0.0]), True, p)
        w_neg = curve_weight(name, grid, False, p)
        rows.append(
            {
                "method": spec.label,
                "family": spec.family,
                "log-ratio": "s_t (token)" if spec.ratio == "token" else "s_bar (rollout)",
                "weight": spec.summary,
                "correct: W(s=-1) / W(s=0)": float(w_pos[0] / w_pos[1]) if w_pos[1] > 0 else float("nan"),
                f"wrong: max W on [-{s_max:g}, {s_max:g}]": float(w_neg.max()),
                "defaults": ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(hp).items()),
            }
        )
    return rows
