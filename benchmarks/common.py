"""What every benchmark shares: the machine description, the load average, and the result record that
``benchmarks/run_all.py`` collects (``--json PATH`` on each benchmark script).

A result record is a JSON object::

    {"key": "sampler", "label": "...", "value": 2.3, "unit": "x", "target": 2.0, "better": "higher",
     "met": true, "ours": "...", "baseline": "...", "sizes": "...", "load": [before, after], ...}

``value`` is measured against ``baseline`` in the same process or the same run; ``load`` is the 1-minute load
average before and after the measurement (the machine is shared).
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load1() -> float:
    """The 1-minute load average (NaN where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``; 0 where unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def trainer_cpu_seconds(trainer) -> float:
    """CPU seconds so far of this process and of the trainer's grader workers (the work of a training run)."""
    import time

    workers = getattr(getattr(trainer, "grader", None), "_workers", [])
    return time.process_time() + sum(proc_cpu_seconds(w.pid) for w in workers)


def machine() -> dict[str, Any]:
    import torch

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }


def bootstrap_interval(
    statistic: Callable[..., float],
    *samples: Sequence[float],
    paired: bool = False,
    n_boot: int = 4000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*samples)``: each sample's values drawn again with
    replacement, ``n_boot`` times (``paired``: one draw of indices for all samples, which then have one length,
    e.g. the rounds of an interleaved benchmark), and the ``(1 - level) / 2``, ``(1 + level) / 2`` quantiles of
    the statistic taken. It covers the spread between the measured repeats of one run only: runs at another time
    of the same code can spread more (other jobs on the machine)."""
    arrays = [np.asarray(x, dtype=np.float64) for x in samples]
    if any(len(a) < 2 for a in arrays):
        raise ValueError("bootstrap_interval needs at least 2 values per sample")
    if paired and len({len(a) for a in arrays}) != 1:
        raise ValueError("paired samples must have one length")
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    for i in range(n_boot):
        if paired:
            idx = rng.integers(0, len(arrays[0]), len(arrays[0]))
            values[i] = statistic(*(a[idx] for a in arrays))
        else:
            values[i] = statistic(*(a[rng.integers(0, len(a), len(a))] for a in arrays))
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def interval_text(lo: float, hi: float, target: float, what: str) -> str:
    """``95% bootstrap interval lo-hi (what)``, and whether it lies on one side of ``target``."""
    side = "crosses the target" if lo <= target <= hi else "clear of the target"
    return f"95% bootstrap interval {lo:.3f}-{hi:.3f} over {what}, {side}"


def met(value: float, target: float, better: str) -> bool:
    return value >= target if better == "higher" else value <= target


def result(
    key: str,
    label: str,
    value: float,
    unit: str,
    target: float,
    better: str,
    *,
    ours: str,
    baseline: str,
    sizes: str,
    load: tuple[float, float],
    **extra: Any,
) -> dict[str, Any]:
    """A result record (see the module docstring); ``better`` is ``"higher"`` or ``"lower"``."""
    if better not in ("higher", "lower"):
        raise ValueError(f"better must be 'higher' or 'lower', got {better!r}")
    return {
        "key": key,
        "label": label,
        "value": value,
        "unit": unit,
        "target": target,
        "better": better,
        "met": met(value, target, better),
        "ours": ours,
        "baseline": baseline,
        "sizes": sizes,
        "load": list(load),
        **extra,
    }


def write_results(path: str | Path | None, records: list[dict[str, Any]]) -> None:
    """Write ``{"machine": ..., "results": records}`` to ``path`` (nothing when ``path`` is None)."""
    if path is None:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"machine": machine(), "results": records}, indent=2, default=str))


def tiny_policy(cache_dir: str | Path, log=print):
    """The ``tiny`` preset's config, warm-started model (from the cache; trained once if missing), tokenizer
    and task splits."""
    import torch

    from training.config import build_config
    from training.rewards import Grader
    from training.task import make_splits
    from training.warmstart import load_or_train, warmstart_key

    torch.set_num_threads(1)  # the tiny preset's setting
    cfg = build_config("tiny", {"method": "grpo", "cache_dir": str(cache_dir), "progress": False})
    splits = make_splits(cfg.task_spec())
    if (Path(cache_dir) / "warmstart" / warmstart_key(cfg) / "warmstart.json").is_file():
        model, tokenizer, info = load_or_train(cfg, splits, None, log=log)  # cached: no grading needed
    else:
        with Grader(workers=cfg.grader_workers, timeout=cfg.grader_timeout) as grader:
            model, tokenizer, info = load_or_train(cfg, splits, grader, log=log)
    return cfg, model.eval(), tokenizer, splits, info
