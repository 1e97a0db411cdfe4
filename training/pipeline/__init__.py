"""``python -m training paper-figures``: train every run the paper's figures need, then build the figures.

- ``plan``: the runs, derived from the figures' own variant specs (``workbench.figures.registry.RUN_FIGURES``),
  each with its trainer config and command line.
- ``state``: what an existing run directory means for a planned run (train, resume, skip, or a conflict).
- ``progress``: the status line (done, running, left, ETA).
- ``execute``: parallel trainer jobs, logs, interruption, the figure build.
- ``cli``: the command's arguments and ``run``.
"""
