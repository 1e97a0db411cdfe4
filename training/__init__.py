"""The training side of the workbench: the RL loop (``python -m training train --help``) and engine adapters
(``training.engines``), all writing run directories through ``workbench.runlog``.

Kept free of imports so that grader worker processes (which import ``training.rewards``) start fast.
"""
