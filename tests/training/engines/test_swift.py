"""ms-swift: its ``loss_type="real"`` against the workbench's REAL (checks in swift_checks.py; skipped without
``.venv-swift``, built by hand as docs/engines.md says)."""


def test_swift_checks_pass_in_the_swift_environment(engine_checks):
    engine_checks("swift", "swift_checks.py", optional=True)
