"""What a run prints when its rounds end and the attacks start (`experiment.attack_notice`)."""

from configs import demo, demo_frontier
from fedgan_jax.driver.experiment import attack_notice


def test_the_attack_phase_names_its_attacks_and_lira_s_cost():
    c = demo_frontier.get_config()
    line = attack_notice(c, 1)
    assert line.startswith("scoring the attacks: gan, global_model,")
    assert "LiRA trains 4 shadow federations of 70 rounds, about 4 federations' time" in line
    c.attack.lira_shadows = 16
    batched = attack_notice(c, 3)  # a batch of 3 runs trains 3 sets of shadows
    assert "16 shadow federations of 70 rounds per run, about 48 federations' time" in batched
    assert "LiRA" not in attack_notice(demo.get_config(), 1)  # no shadows, no estimate
