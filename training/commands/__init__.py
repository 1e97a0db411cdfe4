"""One module per subcommand of ``python -m training`` that is not a package of its own: each holds its
arguments, what it runs and its ``COMMAND`` (``training.cli_common.Command``); ``training.cli`` registers them.
``paper-figures`` and ``study`` live in ``training.pipeline.cli`` and ``training.study.cli``."""
