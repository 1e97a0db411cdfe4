"""app_lib.data: run cards and cached reads stay inside the runs root and follow a run as it trains."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from app_lib import data
from workbench.runlog import RunFormatError
from workbench.synthetic_run import write_synthetic_run

KW = {"method": "real", "prompts": 2, "group_size": 4, "mean_len": 8}


def test_cards_of_good_bad_and_escaping_folders(mixed_root: Path) -> None:
    cards = {c.name: c for c in data.scan(mixed_root)}
    assert sorted(cards) == ["corrupt", "empty", "escape", "grpo-s0", "partial", "real-s0"]
    assert cards["real-s0"].ok and cards["real-s0"].steps == list(range(1, 7)) and cards["real-s0"].synthetic
    assert "no run.json" in (cards["empty"].error or "")
    assert "not valid UTF-8 JSON" in (cards["corrupt"].error or "")
    assert "outside the runs root" in (cards["escape"].error or "") and cards["escape"].path is None


def test_a_pipeline_runs_root_has_no_broken_logs_card(tmp_path: Path) -> None:
    """A runs root made by ``python -m training.pipeline`` holds logs/<run>.log beside the runs: no error card."""
    root = tmp_path / "runs"
    write_synthetic_run(root / "real__s0", steps=2, **KW)
    (root / "logs").mkdir()
    (root / "logs" / "real__s0.log").write_text("step 1/2\n")
    cards = data.scan(root)
    assert [c.name for c in cards] == ["real__s0"]
    assert all(c.ok for c in cards)


def test_links_inside_a_run_that_leave_it_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_synthetic_run(root / "a", steps=2, **KW)
    outside = tmp_path / "elsewhere"
    write_synthetic_run(outside, steps=2, **KW)
    # a table folder that is a link out of the run
    os.rename(root / "a" / "tokens", root / "a" / "tokens_real")
    os.symlink(outside / "tokens", root / "a" / "tokens")
    assert "leaves the run folder" in (data.read_card(root, "a").error or "")
    # a single step file that is a link out of the run
    os.remove(root / "a" / "tokens")
    os.rename(root / "a" / "tokens_real", root / "a" / "tokens")
    f = root / "a" / "rollouts" / "step_000002.parquet"
    f.unlink()
    os.symlink(outside / "rollouts" / "step_000002.parquet", f)
    card = data.read_card(root, "a")
    assert card.ok
    with pytest.raises(RunFormatError, match="leaves the run folder"):
        data.step_rollouts(card, 2)
    with pytest.raises(RunFormatError, match="leaves the run folder"):
        data.token_rows(card, 2, [0])
    rows = data.step_rollouts(card, 1)
    assert len(rows.rollouts) == 8 and rows.n_tokens > 0 and not rows.notes
    tokens = data.token_rows(card, 1, [0, 1])
    assert set(tokens.tokens["rollout"]) == {0, 1} and tokens.complete


def test_state_of_a_run_whose_trainer_died(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_synthetic_run(root / "r", steps=1, state="running", **KW)
    card = data.read_card(root, "r")
    assert card.live and card.display_state == "running"  # its pid is this process
    status = json.loads((root / "r" / "status.json").read_text())
    status["pid"] = 2**22 + 12345  # no such process
    (root / "r" / "status.json").write_text(json.dumps(status))
    card = data.read_card(root, "r")
    assert not card.live and card.display_state == "interrupted"


def test_cached_metrics_follow_new_steps(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    write_synthetic_run(root / "r", steps=2, state="running", **KW)
    later = write_synthetic_run(tmp_path / "later", steps=3, **KW)
    card = data.read_card(root, "r")
    assert list(data.metrics(card)["step"]) == [1, 2]
    sig = data.run_signature(card)
    for table in ("tokens", "rollouts", "metrics"):
        name = "step_000003.parquet"
        (root / "r" / table / name).write_bytes((later / table / name).read_bytes())
    card = data.read_card(root, "r")
    assert data.run_signature(card) != sig
    assert list(data.metrics(card)["step"]) == [1, 2, 3]


def test_default_runs_open_one_run_per_method_at_its_defaults_not_the_alphabetical_first(
    tmp_path: Path,
) -> None:
    """A paper-figures root lists dapo and grpo ablations first; the comparison opens on the plain methods."""
    root = tmp_path / "runs"
    variants = [
        ("dapo", {}, 1), ("dapo", {}, 0), ("grpo", {"clip_mode": "bidirectional"}, 0), ("grpo", {}, 1),
        ("grpo", {}, 0), ("real", {"tau": 0.1}, 0), ("real", {}, 2), ("real", {}, 0), ("real_bce", {}, 0),
    ]  # fmt: skip
    for method, hp, seed in variants:
        name = method + "".join(f"__{k}={v}" for k, v in hp.items()) + f"__s{seed}"
        write_synthetic_run(root / name, hparams=hp, seed=seed, steps=1, **{**KW, "method": method})
    cards = [data.read_card(root, n) for n in sorted(p.name for p in root.iterdir())]
    assert [c.name for c in cards][:2] == ["dapo__s0", "dapo__s1"]
    picked = data.default_runs(cards)
    assert picked[:4] == ["grpo__s0", "dapo__s0", "real__s0", "real_bce__s0"]
    assert len(picked) == 6 and len(set(picked)) == 6
    assert data.default_runs(cards, limit=2) == ["grpo__s0", "dapo__s0"]
