"""The workbench's benchmarks: ``python -m benchmarks`` runs them all (``benchmarks/run_all.py``)."""
