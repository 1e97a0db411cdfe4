"""The app's plumbing: where runs live, cached reads of run directories, background training jobs, display helpers.

Nothing here computes a gradient or a statistic: those come from ``workbench``.
"""
