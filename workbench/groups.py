"""Prompt groups: map a flat batch of rollouts onto a dense ``[n_groups, max_group_size]`` grid.

Every group-wise quantity of the workbench (GRPO advantages, the REAL softmax over a group, leave-one-out
constants C+ and C-) is computed on that grid, so groups may have unequal sizes and appear in any order in the
batch. Empty cells of the grid hold a fill value (``-inf`` for logits, 0 for sums) and a ``valid`` mask says which
cells are real rollouts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GroupLayout:
    """Where each rollout of a flat batch sits in the padded group grid.

    ``cell[b] = group_index[b] * max_size + position[b]`` is the flat index of rollout ``b`` in the grid.
    """

    group_index: Tensor  # [B] long, 0..n_groups-1, in order of first appearance of the sorted ids
    cell: Tensor  # [B] long, flat index into the [n_groups * max_size] grid
    sizes: Tensor  # [n_groups] long
    valid: Tensor  # [n_groups, max_size] bool
    n_groups: int
    max_size: int

    @classmethod
    def from_ids(cls, group_ids: Tensor) -> GroupLayout:
        """Build the layout from integer prompt ids ``[B]`` (any values, any order)."""
        ids = group_ids.reshape(-1)
        _, group_index, sizes = torch.unique(ids, return_inverse=True, return_counts=True)
        n_groups = int(sizes.numel())
        max_size = int(sizes.max()) if n_groups else 0
        order = torch.argsort(group_index, stable=True)
        starts = torch.cumsum(sizes, 0) - sizes
        position = torch.empty_like(group_index)
        position[order] = torch.arange(ids.numel(), device=ids.device) - starts[group_index[order]]
        cell = group_index * max_size + position
        valid = torch.arange(max_size, device=ids.device).unsqueeze(0) < sizes.unsqueeze(1)
        return cls(group_index, cell, sizes, valid, n_groups, max_size)

    def to_grid(self, values: Tensor, fill: float) -> Tensor:
        """Scatter per-rollout ``values [B]`` into the grid ``[n_groups, max_size]``; empty cells get ``fill``.

        Differentiable with respect to ``values``.
        """
        grid = values.new_full((self.n_groups * self.max_size,), fill)
        grid = grid.index_put((self.cell,), values)
        return grid.view(self.n_groups, self.max_size)

    def from_grid(self, grid: Tensor) -> Tensor:
        """Gather the grid ``[n_groups, max_size]`` back to per-rollout values ``[B]``."""
        return grid.reshape(-1)[self.cell]

    def group_sum(self, values: Tensor) -> Tensor:
        """Per-group sum of per-rollout ``values [B]`` -> ``[n_groups]``."""
        out = values.new_zeros(self.n_groups)
        return out.index_add(0, self.group_index, values)

    def broadcast(self, per_group: Tensor) -> Tensor:
        """Per-group values ``[n_groups]`` -> per-rollout ``[B]``."""
        return per_group[self.group_index]


def masked_logsumexp(x: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """``log sum_{mask} exp(x)`` along ``dim``; ``-inf`` where the mask selects nothing.

    Rows with nothing selected are computed on zeros and replaced afterwards, so neither the value nor the
    gradient of such a row can become NaN (plain ``torch.logsumexp`` over all ``-inf`` has a NaN gradient).
    """
    any_selected = mask.any(dim=dim)
    safe = torch.where(mask, x, torch.full_like(x, -torch.inf))
    safe = torch.where(any_selected.unsqueeze(dim), safe, torch.zeros_like(x))
    out = torch.logsumexp(safe, dim=dim)
    return torch.where(any_selected, out, torch.full_like(out, -torch.inf))


def leave_one_out_logsumexp(x: Tensor, mask: Tensor, anchor: float | None) -> Tensor:
    """For every cell ``k`` of a grid row, ``log( e^anchor + sum_{j in mask, j != k} e^{x_j} )``.

    ``x``, ``mask``: ``[n, G]``. Returns ``[n, G]``. With ``anchor=None`` the anchor term is left out and a cell
    with no other selected member gets ``-inf``. Cost ``O(n G^2)``; G is the group size (8 in the paper).
    """
    n, g = x.shape
    others = mask.unsqueeze(1) & ~torch.eye(g, dtype=torch.bool, device=x.device).unsqueeze(0)  # [n, k, j]
    xs = x.unsqueeze(1).expand(n, g, g)
    if anchor is None:
        return masked_logsumexp(xs, others, dim=-1)
    anchor_col = x.new_full((n, g, 1), anchor)
    stacked = torch.cat([anchor_col, xs], dim=-1)
    stacked_mask = torch.cat([torch.ones_like(others[..., :1]), others], dim=-1)
    return masked_logsumexp(stacked, stacked_mask, dim=-1)


# -- helpers shared by the objectives and the closed forms (neither imports the other)


def group_advantages(rewards: Tensor, layout: GroupLayout, adv_eps: float) -> Tensor:
    """GRPO advantage ``A_i = (r_i - mean_g r) / (std_g r + adv_eps)`` with the unbiased std of the group.

    A group of one rollout gets ``A = 0`` (nothing to compare with; verl instead uses ``A = r``).
    """
    grid = layout.to_grid(rewards, 0.0)
    n = layout.sizes.to(rewards.dtype)
    mean = grid.sum(1) / n
    dev = torch.where(layout.valid, grid - mean.unsqueeze(1), torch.zeros_like(grid))
    std = torch.sqrt((dev**2).sum(1) / (n - 1).clamp(min=1))
    return (rewards - layout.broadcast(mean)) / (layout.broadcast(std) + adv_eps)


def group_label_counts(rewards: Tensor, layout: GroupLayout) -> tuple[Tensor, Tensor]:
    """Per group: number of correct (reward 1) and wrong rollouts, each ``[n_groups]``."""
    pos = layout.group_sum((rewards > 0.5).to(rewards.dtype))
    return pos, layout.sizes.to(rewards.dtype) - pos


def real_group_usage(rewards: Tensor, layout: GroupLayout, group_filter: str) -> Tensor:
    """Per group, whether it enters the REAL-family loss: it mixes labels (``mixed``), or always (``all``)."""
    pos, neg = group_label_counts(rewards, layout)
    if group_filter == "mixed":
        return (pos > 0) & (neg > 0)
    return torch.ones_like(pos, dtype=torch.bool)


def real_normaliser(used_groups: Tensor, normalize: str, group_sizes: Tensor) -> float:
    """Denominator ``N`` of the summed losses of the used groups (``workbench.methods.RealHParams.normalize``).

    ``prompts``: the number of groups (prompts) in the mini-batch, used or not; ``rollouts``: the rollouts of the
    used groups, ``sum_g used_g |g|`` (at least 1; for BCE, whose group loss is a sum over its rollouts, the
    loss is then the mean BCE over those rollouts); ``used``: the used groups (at least 1); ``sum``: 1.
    ``group_sizes`` is ``[n_groups]``, the rollouts of each group.
    """
    if normalize == "prompts":
        return float(used_groups.numel())
    if normalize == "rollouts":
        return float(max(int(group_sizes[used_groups].sum()), 1))
    if normalize == "used":
        return float(max(int(used_groups.sum()), 1))
    if normalize == "sum":
        return 1.0
    raise ValueError(f"normalize={normalize!r} is not one of prompts, rollouts, used, sum")
