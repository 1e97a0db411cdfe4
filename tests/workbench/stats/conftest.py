"""Hand-made run directories: the test states every number that matters, the factory fills the rest."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workbench.methods import resolve_hparams
from workbench.runlog import METRICS_SCHEMA, ROLLOUTS_SCHEMA, RunWriter


def rollout_rows(rows: Sequence[dict[str, Any]]) -> dict[str, list]:
    """Rollout table from rows giving at least ``tokens`` (list of (s, weight) pairs) and ``reward``.

    Defaults: ``rollout`` = row index, ``minibatch`` 1, ``group`` 0, ``advantage`` NaN (null), ``log_c`` NaN,
    ``used`` True, ``s_bar`` = mean s, ``weight`` = sum of token weights, ``group_size`` and ``group_correct``
    counted from the rows.
    """
    out: dict[str, list] = {name: [] for name in ROLLOUTS_SCHEMA.names if name != "step"}
    groups: dict[int, list[float]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.get("group", 0), []).append(r["reward"])
        r.setdefault("rollout", i)
    for r in rows:
        s = [t[0] for t in r["tokens"]]
        w = [t[1] for t in r["tokens"]]
        g = r.get("group", 0)
        row = {
            "minibatch": r.get("minibatch", 1),
            "rollout": r["rollout"],
            "group": g,
            "prompt_id": 7 + g,
            "prompt": "What is 6 * 7?",
            "response": "42",
            "answer": "42",
            "reward": r["reward"],
            "length": len(s),
            "s_bar": r.get("s_bar", float(np.mean(s))),
            "advantage": r.get("advantage", float("nan")),
            "weight": r.get("weight", float(np.sum(w))),
            "log_c": r.get("log_c", float("nan")),
            "used": r.get("used", True),
            "group_size": len(groups[g]),
            "group_correct": int(sum(x > 0.5 for x in groups[g])),
        }
        for k, v in row.items():
            out[k].append(v)
    return out


def token_rows(rows: Sequence[dict[str, Any]]) -> dict[str, list]:
    out: dict[str, list] = {
        k: []
        for k in (
            "rollout",
            "pos",
            "token_id",
            "token",
            "old_logp",
            "logp",
            "s",
            "ratio",
            "entropy",
            "weight",
            "grad",
        )
    }
    for i, r in enumerate(rows):
        for pos, (s, w, *old) in enumerate(r["tokens"]):  # (s, weight) or (s, weight, old_logp)
            old_logp = old[0] if old else -1.0
            out["rollout"].append(r.get("rollout", i))
            out["pos"].append(pos)
            out["token_id"].append(pos)
            out["token"].append(f"t{pos}")
            out["old_logp"].append(old_logp)
            out["logp"].append(old_logp + s)
            out["s"].append(s)
            out["ratio"].append(float(np.exp(s)))
            out["entropy"].append(1.0)
            out["weight"].append(w)
            out["grad"].append(0.0)
    return out


def metric_row(**values: float) -> dict[str, float]:
    row = {name: 0.0 for name in METRICS_SCHEMA.names if name != "step"}
    row["val_pass1"] = float("nan")
    row.update(values)
    return row


RunFactory = Callable[..., Path]
# The first mini-batch of a step whose rows name none: one wrong rollout, alone in its group, out of the loss.
FILLER = {"minibatch": 0, "reward": 0.0, "tokens": [(0.0, 0.0)], "group": 99, "used": False, "weight": 0.0}


@pytest.fixture
def make_run(tmp_path: Path) -> RunFactory:
    """``make_run(name, method, steps={step: [rollout rows]}, hparams=None, seed=0, metrics={step: {...}})``.

    Rows default to mini-batch 1; a step without a mini-batch-0 row gets ``FILLER`` as its first mini-batch.
    """

    def factory(
        name: str,
        method: str = "grpo",
        steps: dict[int, list[dict[str, Any]]] | None = None,
        hparams: dict[str, Any] | None = None,
        seed: int = 0,
        metrics: dict[int, dict[str, float]] | None = None,
    ) -> Path:
        hp = dataclasses.asdict(resolve_hparams(method, hparams or {}))
        config = {"method": method, "seed": seed, "hparams": hp, "group_size": 4}
        w = RunWriter.create(tmp_path / name, name=name, method=method, config=config, env={})
        metrics = metrics or {}
        for step in sorted(set(steps or {}) | set(metrics)):
            rows = [dict(r) for r in (steps or {}).get(step, [])]
            if rows and all(r.get("minibatch", 1) > 0 for r in rows):
                rows.append(dict(FILLER))  # every step has a first mini-batch (s = 0 there)
            rol, tok = rollout_rows(rows), token_rows(rows)
            rol["step"], tok["step"] = [step] * len(rol["rollout"]), [step] * len(tok["rollout"])
            w.write_step(step, metric_row(**metrics.get(step, {})), rol, tok)
        w.set_status("finished", last_step=max(set(steps or {}) | set(metrics), default=0))
        return tmp_path / name

    return factory
