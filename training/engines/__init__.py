"""Adapters that run the workbench's objectives inside existing RL engines and write its run directory.

- ``training.engines.records``: engine-neutral pieces (per-update rollout/token records from an
  ``ObjectiveResult``, step metrics, assembling a step for ``workbench.runlog.RunWriter``).
- ``training.engines.verl_real``: the verl actor loss (any ``workbench.objectives`` method, group ids from verl's
  ``uid``, rewards from its scores, normalised over the global mini-batch) and the group-whole batch planning.
- ``training.engines.verl_trainer``: verl's V1 trainer with that loss, group-whole balancing and the run-dir hook.
- ``training.engines.trl_trainer``: a TRL ``GRPOTrainer`` subclass training with any workbench objective.

This package imports neither verl nor TRL; each submodule imports its engine, which lives in its own environment
(see README, "Scaling out: verl and TRL").
"""
