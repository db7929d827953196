"""The end-to-end test's federation over seeds: does it learn, does D_gen work?

    .venv/bin/python tests/e2e_seeds.py 0,1,2,3,4

Runs `tests/test_attack_e2e.py`'s `blocks_config` (the block digits, its rounds and
generator steps) once per seed through `experiment.train_and_evaluate` and prints the
main-task accuracy per round, the generator's start, the `gan` attack's AUC under both
protocols and the attack classifier's accuracy: the margins the test asserts, per seed.
Not collected by pytest (no ``test_`` prefix).
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fedgan_jax.driver import experiment  # noqa: E402
from tests import synthetic  # noqa: E402
from tests import test_attack_e2e as e2e  # noqa: E402


def main(seeds: list[int]) -> None:
    for seed in seeds:
        folder = tempfile.mkdtemp()
        data_dir = synthetic.write_idx(
            folder,
            train_per_class=e2e.TRAIN_PER_CLASS,
            test_per_class=e2e.TEST_PER_CLASS,
            seed=seed,
        )
        config = e2e.blocks_config(data_dir)
        config.seed = seed
        r = experiment.train_and_evaluate(config, os.path.join(folder, "run"), progress=False)
        gan = r["attacks"]["gan"]
        auc = (
            None if gan is None else (round(gan["paper"]["auc"], 3), round(gan["strict"]["auc"], 3))
        )
        print(
            f"seed {seed}: accuracy {[round(a, 2) for a in r['main_task_accuracy']]}, "
            f"generator from round {r['gan_start_round']}, gan AUC (paper, strict) {auc}, "
            f"attack classifier accuracy {r['attack_model_accuracy']}",
            flush=True,
        )


if __name__ == "__main__":
    main([int(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "0,1,2").split(",")])
