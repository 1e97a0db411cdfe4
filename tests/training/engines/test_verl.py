"""verl: the workbench objectives against verl's own losses and data path (checks in verl_checks.py)."""


def test_verl_checks_pass_in_the_verl_environment(engine_checks):
    engine_checks("verl", "verl_checks.py")
