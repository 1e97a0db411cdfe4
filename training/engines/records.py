"""Engine-neutral pieces of the run directory: what an engine hook hands to ``workbench.runlog.RunWriter``.

An engine (verl, TRL) calls a ``workbench.objectives`` function on each micro-batch. From that call's
``ObjectiveResult``, ``update_records`` derives the per-rollout and per-token records of ``ROLLOUTS_SCHEMA`` and
``TOKENS_SCHEMA`` with the closed forms of ``workbench.closed_forms``; workers that run in other processes write
them as shards, which ``read_update_shards`` reads back. ``workbench.step_tables.build_step`` (with
``every_update=False``: each rollout's first update) joins them with the sampler's facts into the three tables of
one step. Nothing here imports an engine.

``grad`` in the token records is ``scale * dL_mb/dlogp`` without the KL term, where ``L_mb`` is the objective's
loss on the micro-batch and ``scale`` the factor the engine multiplies it by (its share of the mini-batch loss), so
``grad`` is the exact gradient of the mini-batch loss with respect to that token's log-prob.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from workbench.step_tables import UpdateRecord
from workbench.update_records import update_records

__all__ = ["read_update_shards", "update_records"]


def read_update_shards(shard_dir: Any) -> list[UpdateRecord]:
    """The update records that workers wrote under ``shard_dir/{rollouts,tokens}/NAME`` (name order)."""
    import pyarrow.parquet as pq

    root = Path(shard_dir)
    pairs = []
    folder = root / "rollouts"
    names = sorted(p.name for p in folder.glob("*.parquet")) if folder.is_dir() else []
    for name in names:
        tok_path = root / "tokens" / name
        if not tok_path.is_file():
            raise FileNotFoundError(
                f"{tok_path} is missing: the worker that wrote {folder / name} did not finish"
            )
        r = pq.read_table(folder / name).to_pydict()
        t = pq.read_table(tok_path).to_pydict()
        pairs.append(
            UpdateRecord({k: np.asarray(v) for k, v in r.items()}, {k: np.asarray(v) for k, v in t.items()})
        )
    return pairs
