"""Every registered spec is complete: its divisor is one the engines know, its defaults validate, its curve is a
weight (finite, >= 0) at the defaults."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from workbench.methods import SPECS, CurveScenario
from workbench.methods.spec import DIVISORS


@pytest.mark.parametrize("name", list(SPECS))
def test_every_spec_is_complete(name: str) -> None:
    spec = SPECS[name]
    assert spec.divides_by(spec.defaults) in DIVISORS
    assert dataclasses.replace(spec.defaults) == spec.defaults  # __post_init__ accepts its own defaults
    for f in dataclasses.fields(spec.defaults):
        assert f.metadata.get("help"), (
            f"{name}.{f.name} has no help text (the trainer's flag would say nothing)"
        )
    s = np.linspace(-3, 3, 61)
    for positive in (True, False):
        w = spec.curve(s, positive, spec.defaults, CurveScenario())
        assert w.shape == s.shape and np.isfinite(w).all() and (w >= 0).all()
