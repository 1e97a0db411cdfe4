"""workbench.synthetic_run: the fixture runs follow the format and their weights are the closed forms'."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workbench.runlog import open_run
from workbench.synthetic_run import write_synthetic_run


@pytest.mark.parametrize("method", ["grpo", "dapo", "gspo", "real", "real_bce", "real_no_anchor"])
def test_synthetic_run_is_consistent(tmp_path: Path, method: str) -> None:
    run = open_run(
        write_synthetic_run(tmp_path / method, method=method, steps=3, prompts=3, group_size=4, mean_len=8)
    )
    assert run.config["synthetic"] is True and run.steps() == [1, 2, 3]
    assert run.status()["state"] == "finished"
    ro, tok = run.rollouts(), run.tokens()
    s_bar = tok.groupby(["step", "rollout"])["s"].mean()
    np.testing.assert_allclose(ro.set_index(["step", "rollout"])["s_bar"].loc[s_bar.index], s_bar, atol=1e-6)
    first = tok.merge(ro[["step", "rollout", "minibatch"]], on=["step", "rollout"])
    assert (first.loc[first["minibatch"] == 0, "s"] == 0).all()
    w = tok.groupby(["step", "rollout"])["weight"].sum()
    np.testing.assert_allclose(
        ro.set_index(["step", "rollout"])["weight"].loc[w.index], w, rtol=1e-4, atol=1e-6
    )
    if method.startswith("real"):
        assert ro["weight"].max() <= 1 / 0.5 + 1e-6
    assert ro["response"].str.contains("boxed").all()
