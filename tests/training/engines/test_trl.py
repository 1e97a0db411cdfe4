"""TRL: the workbench GRPOTrainer subclass trained with TRL's own loop (checks in trl_checks.py)."""


def test_trl_checks_pass_in_the_trl_environment(engine_checks):
    engine_checks("trl", "trl_checks.py")
