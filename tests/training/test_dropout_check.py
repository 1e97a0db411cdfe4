"""The trainer reuses the first update's forward as the first mini-batch's old log-probs only without dropout."""

from __future__ import annotations

import torch

from training.loop import stochastic_in_training
from training.model import TinyModelSpec, build_tiny_model


def test_the_tiny_model_has_no_dropout_and_a_dropout_layer_is_seen() -> None:
    model = build_tiny_model(TinyModelSpec(hidden=32, layers=1, heads=2, intermediate=64), 64, 0, 1, seed=0)
    assert not stochastic_in_training(model)
    model.config.attention_dropout = 0.1  # a config rate counts
    assert stochastic_in_training(model)
    model.config.attention_dropout = 0.0
    model.model.layers[0].mlp.add_module("drop", torch.nn.Dropout(0.2))  # so does a dropout module
    assert stochastic_in_training(model)
