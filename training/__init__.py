"""RLVR training for the REAL workbench: ``python -m training train --help``.

Kept free of imports so that grader worker processes (which import ``training.rewards``) start fast.
"""
