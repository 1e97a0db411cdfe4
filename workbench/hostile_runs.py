"""SYNTHETIC run folders built to attack a reader of runs (tests and benchmarks; never a training result).

- ``write_huge_text_run``: a small valid REAL run whose step 1 rollouts file holds ``count`` strings of
  ``text_mb`` MB each (prompts of two groups, an answer, a response): zstd packs four 100 MB strings into a file
  of a few KB. Its step 2 holds one 1 MB prompt and one 300,000-character token, long but under the limit of what a
  bounded reader reads (``workbench.step_slices``), so that they are read and cut.
- ``write_huge_step_run``: one step of ``tokens`` response tokens (by default 10 M: 8 groups x 8 rollouts of
  156,250 tokens), written a row group at a time so that building it takes little memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from workbench.runlog import (
    METRICS_SCHEMA,
    TOKENS_SCHEMA,
    RunWriter,
    atomic_write_table,
    step_file,
    to_table,
)
from workbench.synthetic_run import write_synthetic_run

HUGE_TEXT_STEP = 1  # the step of write_huge_text_run whose rollouts hold the huge strings
LONG_TEXT_STEP = 2  # the step whose prompt and token are long, but readable
LONG_PROMPT_CHARS = 1_000_000
LONG_TOKEN_CHARS = 300_000


def _text(n: int, word: str = "<b>huge</b> *text* ") -> str:
    return (word * (n // len(word) + 1))[:n]


def _replace_texts(path: Path, values: dict[str, dict[int, str]]) -> None:
    """Rewrite step file ``path`` with ``values[column][row]`` in place of those cells (zstd, atomically)."""
    t = pq.read_table(path)
    for col, rows in values.items():
        cells = t.column(col).to_pylist()
        for row, text in rows.items():
            cells[row] = text
        t = t.set_column(t.schema.get_field_index(col), col, pa.array(cells, pa.string()))
    atomic_write_table(path, t)


def write_huge_text_run(run_dir: Path | str, *, text_mb: float = 100, count: int = 4, seed: int = 0) -> Path:
    """A REAL run of 2 steps x 2 groups x 4 rollouts with ``count`` (at most 4) strings of ``text_mb`` MB in step
    1's rollouts file: the prompt of rollout 0 (group 0), the answer of rollout 1, the response of rollout 2 and the
    prompt of rollout 4 (group 1), in that order. Step 2: a 1 MB prompt (group 0) and a 300,000-character token
    (rollout 0, position 0)."""
    if not 1 <= count <= 4:
        raise ValueError(f"count must be 1..4, got {count}")
    run_dir = write_synthetic_run(
        run_dir, method="real", steps=2, prompts=2, group_size=4, minibatches=2, mean_len=8, seed=seed
    )
    big = _text(int(text_mb * 1e6))
    cells = [("prompt", 0), ("answer", 1), ("response", 2), ("prompt", 4)][:count]
    values: dict[str, dict[int, str]] = {}
    for col, row in cells:
        values.setdefault(col, {})[row] = big
    _replace_texts(step_file(run_dir, "rollouts", HUGE_TEXT_STEP), values)
    del big
    rol = (
        pq.read_table(step_file(run_dir, "rollouts", LONG_TEXT_STEP), columns=["group"]).column(0).to_pylist()
    )
    long_prompt = _text(LONG_PROMPT_CHARS, "long prompt ")
    _replace_texts(
        step_file(run_dir, "rollouts", LONG_TEXT_STEP),
        {"prompt": {i: long_prompt for i, g in enumerate(rol) if g == 0}},
    )
    _replace_texts(
        step_file(run_dir, "tokens", LONG_TEXT_STEP), {"token": {0: _text(LONG_TOKEN_CHARS, "tok ")}}
    )
    return run_dir


def write_huge_step_run(
    run_dir: Path | str,
    *,
    tokens: int = 10_000_000,
    groups: int = 8,
    group_size: int = 8,
    seed: int = 0,
    rows_per_write: int = 1 << 20,
) -> Path:
    """A finished REAL run of one step holding ``tokens`` response tokens, spread evenly over ``groups`` x
    ``group_size`` rollouts (half of each group correct), minibatch 1 (so ``s`` != 0)."""
    run_dir = Path(run_dir)
    rng = np.random.default_rng(seed)
    n = groups * group_size
    length = tokens // n
    if length < 1:
        raise ValueError(f"need at least one token per rollout: {tokens} tokens over {n} rollouts")
    config = {"method": "real", "seed": seed, "steps": 1, "group_size": group_size, "prompts_per_step": groups,
              "preset": "synthetic", "synthetic": True, "hparams": {"tau": 0.5}}  # fmt: skip
    env = {"generator": "workbench.hostile_runs", "note": "SYNTHETIC: a step too large to draw"}
    writer = RunWriter.create(run_dir, name=run_dir.name, method="real", config=config, env=env)
    group = np.repeat(np.arange(groups), group_size)
    reward = np.tile(np.arange(group_size) % 2 == 0, groups).astype(float)
    s_bar = rng.normal(0, 0.02, n)
    rollouts = {
        "step": np.ones(n, dtype=np.int64), "minibatch": np.ones(n, dtype=np.int32),
        "rollout": np.arange(n), "group": group, "prompt_id": group, "prompt": [f"long prompt {g}" for g in group],
        "response": ["(long response)"] * n, "answer": ["42"] * n, "reward": reward,
        "length": np.full(n, length), "s_bar": s_bar, "advantage": np.full(n, np.nan),
        "weight": np.full(n, 1.0), "log_c": np.full(n, np.log(group_size / 2)), "used": np.ones(n, dtype=bool),
        "group_size": np.full(n, group_size), "group_correct": np.full(n, group_size // 2),
    }  # fmt: skip
    atomic_write_table(step_file(run_dir, "rollouts", 1), to_table("rollouts", rollouts))
    vocab = pa.array([f"t{i} " for i in range(64)], pa.string())
    path = step_file(run_dir, "tokens", 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with pq.ParquetWriter(tmp, TOKENS_SCHEMA, compression="zstd") as out:
        total = n * length
        for start in range(0, total, rows_per_write):
            idx = np.arange(start, min(total, start + rows_per_write))
            m = len(idx)
            old = -rng.exponential(0.35, m).astype(np.float32)
            s = rng.normal(0, 0.03, m).astype(np.float32)
            cols = {
                "step": np.ones(m, dtype=np.int64), "rollout": (idx // length).astype(np.int32),
                "pos": (idx % length).astype(np.int32), "token_id": rng.integers(0, 64, m).astype(np.int32),
                "old_logp": old, "logp": old + s, "s": s, "ratio": np.exp(s),
                "entropy": rng.gamma(2.0, 0.35, m).astype(np.float32),
                "weight": np.full(m, 1.0 / length, dtype=np.float32),
                "grad": np.full(m, -1.0 / length, dtype=np.float32),
            }  # fmt: skip
            arrays = [
                pa.DictionaryArray.from_arrays(pa.array(cols["token_id"]), vocab).cast(pa.string())
                if f.name == "token"
                else pa.array(cols[f.name], f.type)
                for f in TOKENS_SCHEMA
            ]
            out.write_table(pa.Table.from_arrays(arrays, schema=TOKENS_SCHEMA))
    tmp.replace(path)
    metrics = {f.name: [0.0] for f in METRICS_SCHEMA}
    metrics.update(step=[1], val_pass1=[np.nan], grader_timeouts=[0], grader_errors=[0], reward_mean=[0.5])
    metrics["response_len_mean"] = [float(length)]
    atomic_write_table(step_file(run_dir, "metrics", 1), to_table("metrics", metrics))
    writer.set_status("finished", last_step=1, steps=1)
    return run_dir
