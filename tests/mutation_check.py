"""Mutation check: plausible bugs, injected in memory, must each make a test fail.

    .venv/bin/python tests/mutation_check.py              # every mutation (~10 CPU-minutes)
    .venv/bin/python tests/mutation_check.py ce_sign fedavg_weights   # some of them

Each mutation is (name, module, exact original snippet, replacement, tests). For each one
this script checks that the snippet occurs exactly once in the module's source (so it
notices when the code drifts: it stops with an error naming the mutation), then runs
pytest on the listed tests in a subprocess in which an import hook (`sys.meta_path`)
compiles the module from the mutated text. Nothing is written to disk: the files, their
bytecode caches and the git tree are untouched (the XLA compilation cache under
``.pytest_cache/jax`` is shared; its entries are keyed by the compiled program).

It prints a table (mutation, the tests that failed or SURVIVED, seconds) and exits
non-zero if any mutation survives, a snippet is missing, or a child run errors. Not
collected by pytest (no ``test_`` prefix). docs/design.md, Mutation check, lists the results.
"""

from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.machinery
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = "FEDGAN_MUTATION"  # child mode: the name of the mutation to apply
APPLIED = "FEDGAN_MUTATION_APPLIED"  # child mode: file the hook writes once it mutated

GAN = "tests/test_gan.py::"
E2E = "tests/test_attack_e2e.py::"
COLLUDING = "tests/test_colluding.py::"


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    module: str
    original: str
    replacement: str
    tests: tuple[str, ...]


MUTATIONS = [
    # --- four bugs of the label-based attacks
    Mutation(
        "ce_sign",
        "fedgan_jax.adversary.gan_objective",
        'terms["ce"] = jnp.sum(ce * w) / wsum',
        'terms["ce"] = -jnp.sum(ce * w) / wsum',
        (GAN + "test_cross_entropy_term_makes_f_assign_the_target_class",),
    ),
    Mutation(
        "disagreement_sign",
        "fedgan_jax.adversary.gan_objective",
        'terms["disagreement"] = -jnp.sum(gap * w) / wsum',
        'terms["disagreement"] = jnp.sum(gap * w) / wsum',
        (GAN + "test_disagreement_term_seeks_samples_where_the_student_disagrees",),
    ),
    Mutation(
        "realism_target_inverted",
        "fedgan_jax.adversary.gan_objective",
        "bce = optax.sigmoid_binary_cross_entropy(fake, 1.0)",
        "bce = optax.sigmoid_binary_cross_entropy(fake, 0.0)",
        (GAN + "test_realism_discriminator_learns_then_generator_fools_it",),
    ),
    Mutation(
        "in_rule_wrong_participant",
        "fedgan_jax.adversary.view",
        "row = jnp.expand_dims(self.victim, (-1, -2))",
        "row = jnp.expand_dims(self.adversary, (-1, -2))",
        (
            E2E + "test_label_attacks_mark_the_victims_classes_in",
            E2E + "test_decisions_are_the_in_rule_record_by_record",
        ),
    ),
    # --- the other generator terms and critics
    Mutation(
        "entropy_sign",
        "fedgan_jax.adversary.gan_objective",
        'terms["entropy"] = -_entropy_of_mean(',
        'terms["entropy"] = _entropy_of_mean(',
        (GAN + "test_entropy_term_spreads_f_predictions_over_the_classes",),
    ),
    Mutation(
        "activation_sign",
        "fedgan_jax.adversary.gan_objective",
        'terms["activation"] = -jnp.sum(',
        'terms["activation"] = jnp.sum(',
        (GAN + "test_activation_term_raises_f_features",),
    ),
    Mutation(
        "diversity_sign",
        "fedgan_jax.adversary.gan_objective",
        'terms["diversity"] = -_mode_seeking(x, z, spec.num_classes)',
        'terms["diversity"] = _mode_seeking(x, z, spec.num_classes)',
        (GAN + "test_diversity_term_spreads_samples_of_a_class",),
    ),
    Mutation(
        "student_sign",
        "fedgan_jax.adversary.gan_objective",
        "return jnp.abs(_critic_apply(spec, critic_params, x) - teacher_logits).mean()",
        "return -jnp.abs(_critic_apply(spec, critic_params, x) - teacher_logits).mean()",
        (GAN + "test_student_learns_to_agree_with_the_global_model",),
    ),
    Mutation(
        "discriminator_fake_labelled_real",
        "fedgan_jax.adversary.gan_objective",
        "_critic_apply(spec, critic_params, x)[:, 0], 0.0)",
        "_critic_apply(spec, critic_params, x)[:, 0], 1.0)",
        (GAN + "test_realism_discriminator_learns_then_generator_fools_it",),
    ),
    Mutation(
        "global_model_not_frozen",
        "fedgan_jax.adversary.gan_objective",
        'classifier.apply({"params": lax.stop_gradient(global_params)}, x, **kw)',
        'classifier.apply({"params": global_params}, x, **kw)',
        (GAN + "test_gradient_reaches_generator_only",),
    ),
    # --- D_gen
    Mutation(
        "dgen_keep_ignores_target",
        "fedgan_jax.adversary.gan_sampling",
        "keep = keep & (pred == labels)",
        "keep = keep | (pred == labels)",
        (GAN + "test_sample_keeps_what_f_assigns_to_the_target",),
    ),
    Mutation(
        "dgen_keeps_undeclared_classes",
        "fedgan_jax.adversary.gan_sampling",
        "keep = view.declared_classes[labels] & (probs.max(-1) >= spec.keep_confidence)",
        "keep = probs.max(-1) >= spec.keep_confidence",
        (GAN + "test_undeclared_classes_are_never_kept",),
    ),
    Mutation(
        "dgen_labelled_by_target",
        "fedgan_jax.adversary.gan_sampling",
        "y=pred[order],",
        "y=labels[order],",
        (GAN + "test_sample_keeps_what_f_assigns_to_the_target",),
    ),
    # --- federation
    Mutation(
        "fedavg_weights_ignored",
        "fedgan_jax.federation.fedavg",
        '== "examples":\n        return counts.astype(jnp.float32)',
        '== "examples":\n        return jnp.ones(counts.shape, jnp.float32)',
        ("tests/test_federated.py",),
    ),
    Mutation(
        "fedavg_sum_not_mean",
        "fedgan_jax.federation.fedavg",
        "lambda g, u: g + (u / weight_sum).astype(g.dtype)",
        "lambda g, u: g + u.astype(g.dtype)",
        ("tests/test_federated.py",),
    ),
    # --- attacks, protocols, metrics
    Mutation(
        "loss_threshold_direction",
        "fedgan_jax.adversary.attack",
        "return -target_loss, target_loss <= threshold",
        "return -target_loss, target_loss >= threshold",
        (
            "tests/test_attack.py::test_loss_threshold_by_hand",
            E2E + "test_loss_threshold_recomputed_from_the_global_model",
        ),
    ),
    Mutation(
        "protocol_adversary_as_nonmember",
        "fedgan_jax.evaluation.protocols",
        "known = np.isin(owner, [adversary, *colluders])",
        "known = np.isin(owner, list(colluders))",
        (
            "tests/test_metrics.py::test_paper_protocol",
            E2E + "test_ground_truth_is_the_victims_records",
        ),
    ),
    Mutation(
        "strict_held_out_any_class",
        "fedgan_jax.evaluation.protocols",
        "held_out = np.flatnonzero(np.asarray(victim_labels, bool)[test_y]) + len(owner)",
        "held_out = np.arange(len(test_y)) + len(owner)",
        (
            "tests/test_metrics.py",
            E2E + "test_ground_truth_is_the_victims_records",
        ),
    ),
    Mutation(
        "confusion_fp_counts_fn",
        "fedgan_jax.evaluation.metrics",
        '"fp": int(np.sum(~m & d)),',
        '"fp": int(np.sum(m & ~d)),',
        ("tests/test_metrics.py::test_confusion_by_hand",),
    ),
    # --- the trigger (adversary.fired: host code of the adversary)
    Mutation(
        "trigger_comparison",
        "fedgan_jax.driver.adversary",
        "return np.asarray(announced_accuracy) >= plan.trigger_accuracy",
        "return np.asarray(announced_accuracy) <= plan.trigger_accuracy",
        (E2E + "test_federation_learns_and_the_paper_trigger_fires_on_the_announced_accuracy",),
    ),
    Mutation(
        "own_trigger_reads_announced_accuracy",
        "fedgan_jax.driver.adversary",
        "return np.asarray(own_accuracy) >= plan.trigger_accuracy",
        "return np.asarray(announced_accuracy) >= plan.trigger_accuracy",
        (E2E + "test_own_accuracy_trigger_and_soft_labels",),
    ),
    # --- the redesign: the adversary's slot in the round, what it keeps
    Mutation(
        "upload_in_every_other_slot",
        "fedgan_jax.federation.fedavg",
        "return lax.cond(who == adversary, malicious, honest)",
        "return lax.cond(who != adversary, malicious, honest)",
        (
            "tests/test_federated.py::test_adversary_upload_replaces_only_its_slot_and_gets_only_its_inputs",
        ),
    ),
    Mutation(
        "adversary_keeps_a_stale_model",
        "fedgan_jax.driver.adversary",
        "state = state.replace(latest=params, last_update_norm=norm)",
        "state = state.replace(last_update_norm=norm)",
        ("tests/test_adversary.py::test_observe_keeps_the_latest_model_and_every_kth_snapshot",),
    ),
    Mutation(
        "snapshots_overwrite_one_slot",
        "fedgan_jax.driver.adversary",
        "slot = t // every - 1",
        "slot = 0",
        ("tests/test_adversary.py::test_observe_keeps_the_latest_model_and_every_kth_snapshot",),
    ),  # --- partitions, DP accounting and DP-SGD, label recovery
    Mutation(
        "dpsgd_no_clip",
        "fedgan_jax.nn.training",
        "scale = jnp.where(mask, jnp.minimum(1.0, clip / jnp.maximum(norms, 1e-12)), 0.0)",
        "scale = jnp.where(mask, 1.0, 0.0)",
        ("tests/test_privacy.py::test_per_example_clipping_bounds_each_records_contribution",),
    ),
    Mutation(
        "dp_sensitivity_c_not_2c",
        "fedgan_jax.federation.privacy",
        "gaussian = dp_accounting.GaussianDpEvent(noise_multiplier / 2)",
        "gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)",
        ("tests/test_privacy.py::test_user_level_everyone_trains_is_composed_gaussians",),
    ),
    Mutation(
        "dirichlet_ignores_alpha",
        "fedgan_jax.data.partition",
        "q = rng.dirichlet(np.full(num_participants, alpha))",
        "q = rng.dirichlet(np.full(num_participants, 1.0))",
        ("tests/test_partition.py::test_dirichlet_shares_have_the_dirichlet_variance",),
    ),
    Mutation(
        "shared_victim_extra_holder",
        "fedgan_jax.data.partition",
        "for _ in range(holders - mine):",
        "for _ in range(holders):",
        (
            "tests/test_partition.py::test_shared_every_class_has_its_holders_and_the_victim_keeps_its_k",
        ),
    ),
    Mutation(
        "recovery_sign_flipped",
        "fedgan_jax.adversary.label_recovery",
        "return np.nan_to_num(np.asarray(signal, np.float64), nan=0.0) > 0",
        "return np.nan_to_num(np.asarray(signal, np.float64), nan=0.0) < 0",
        ("tests/test_label_recovery.py::test_recovers_the_partition_exactly_from_a_clear_signal",),
    ),
    Mutation(
        "own_update_not_removed",
        "fedgan_jax.driver.adversary",
        "change = change - jnp.asarray(selected)[:, None] * own / plan.clients_per_round",
        "change = change + 0 * own",
        (
            "tests/test_threat_model.py::"
            "test_hidden_declarations_recover_labels_from_what_the_adversary_has",
        ),
    ),
    # --- the frontier attacks: LiRA's shadows, the colluding server, secure aggregation
    Mutation(
        "lira_in_out_swapped",
        "fedgan_jax.adversary.lira",
        "return norm.logpdf(target, mu_in, sd_in) - norm.logpdf(target, mu_out, sd_out)",
        "return norm.logpdf(target, mu_out, sd_out) - norm.logpdf(target, mu_in, sd_in)",
        (
            "tests/test_lira.py::test_online_and_offline_scores_of_hand_built_gaussians",
            "tests/test_lira.py::test_lira_separates_members_and_fails_with_scrambled_masks",
        ),
    ),
    Mutation(
        "lira_offline_wrong_tail",
        "fedgan_jax.adversary.lira",
        "return -norm.logcdf(-(target - mu_out) / sd_out)",
        "return -norm.logcdf((target - mu_out) / sd_out)",
        ("tests/test_lira.py::test_online_and_offline_scores_of_hand_built_gaussians",),
    ),
    Mutation(
        "source_posterior_loss_sign",
        "fedgan_jax.adversary.colluding",
        "log_prior - losses.T / temperature",
        "log_prior + losses.T / temperature",
        (
            COLLUDING + "test_source_inference_names_the_owner_and_needs_the_right_upload",
            COLLUDING + "test_source_posterior_is_bayes_over_the_local_models_losses",
        ),
    ),
    Mutation(
        "fedmia_null_includes_the_target",
        "fedgan_jax.adversary.colluding",
        "others = (~is_target).astype(stats.dtype)[:, None]",
        "others = jnp.ones(is_target.shape, stats.dtype)[:, None]",
        (
            COLLUDING + "test_client_null_tail_by_hand",
            COLLUDING + "test_fedmia_separates_the_targets_records_with_the_non_target_null",
        ),
    ),
    Mutation(
        "secure_aggregation_hands_out_uploads",
        "fedgan_jax.federation.fedavg",
        'server_view == "uploads")',
        'server_view != "none")',
        (COLLUDING + "test_secure_aggregation_leaves_only_the_sum",),
    ),
]


def _source(module: str) -> tuple[str, str]:
    spec = importlib.machinery.PathFinder.find_spec(module.split(".")[0], [ROOT])
    path = os.path.join(os.path.dirname(spec.origin), *module.split(".")[1:]) + ".py"
    with open(path) as f:
        return path, f.read()


def mutated_source(m: Mutation) -> str:
    """The module's source with the mutation applied; raises if the snippet drifted."""
    path, source = _source(m.module)
    count = source.count(m.original)
    if count != 1:
        raise SystemExit(
            f"mutation {m.name!r}: the original snippet occurs {count} times in {path} "
            f"(expected exactly once); update tests/mutation_check.py:\n{m.original}"
        )
    return source.replace(m.original, m.replacement)


# --------------------------------------------------------------------------- child


class _MutatingLoader(importlib.machinery.SourceFileLoader):
    def __init__(self, fullname, path, mutation):
        super().__init__(fullname, path)
        self.mutation = mutation

    def get_code(self, fullname):  # never reads or writes bytecode
        code = compile(mutated_source(self.mutation), self.path, "exec")
        with open(os.environ[APPLIED], "w") as f:
            f.write(self.mutation.name)
        return code


class _MutatingFinder(importlib.abc.MetaPathFinder):
    def __init__(self, mutation):
        self.mutation = mutation

    def find_spec(self, fullname, path, target=None):
        if fullname != self.mutation.module:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        spec.loader = _MutatingLoader(fullname, spec.origin, self.mutation)
        return spec


def _child(argv: list[str]) -> int:
    import pytest

    (mutation,) = [m for m in MUTATIONS if m.name == os.environ[ENV]]
    sys.meta_path.insert(0, _MutatingFinder(mutation))
    return pytest.main(argv)


# --------------------------------------------------------------------------- parent


def _failed_tests(junit: str) -> list[str]:
    failed = []
    for case in ET.parse(junit).iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed.append(case.get("name"))
    return failed


def run_one(m: Mutation, timeout: int = 600) -> tuple[str, list[str], float]:
    """(status, failed tests, seconds); status: killed | SURVIVED | ERROR (...)."""
    mutated_source(m)  # fail loudly before starting anything
    with tempfile.TemporaryDirectory() as tmp:
        junit, applied = os.path.join(tmp, "junit.xml"), os.path.join(tmp, "applied")
        env = {**os.environ, ENV: m.name, APPLIED: applied}
        cmd = [sys.executable, os.path.abspath(__file__), "--child", "-q", "-p", "no:cacheprovider"]
        cmd += [f"--junitxml={junit}", *m.tests]
        tic = time.perf_counter()
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        seconds = time.perf_counter() - tic
        if not os.path.exists(applied):
            return "ERROR (module never imported)", [], seconds
        if proc.returncode == 0:
            return "SURVIVED", [], seconds
        if proc.returncode != 1 or not os.path.exists(junit):
            tail = (proc.stdout + proc.stderr)[-2000:]
            return f"ERROR (pytest exit {proc.returncode})\n{tail}", [], seconds
        return "killed", _failed_tests(junit), seconds


def main(names: list[str]) -> int:
    chosen = [m for m in MUTATIONS if not names or m.name in names]
    unknown = set(names) - {m.name for m in MUTATIONS}
    if unknown:
        raise SystemExit(f"unknown mutations: {sorted(unknown)}")
    for m in chosen:  # every snippet checked before the first run
        mutated_source(m)
    rows, bad, total = [], 0, time.perf_counter()
    for m in chosen:
        status, failed, seconds = run_one(m)
        bad += status != "killed"
        killers = ", ".join(failed) if failed else status
        rows.append((m.name, f"`{m.module}`", killers, f"{seconds:.0f}"))
        print(
            f"{m.name}: {status.splitlines()[0]} ({seconds:.0f}s) {', '.join(failed)}", flush=True
        )
        if status.startswith("ERROR"):
            print(status, flush=True)
    print()
    print("| mutation | module | killed by (failing tests) | seconds |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{len(chosen) - bad}/{len(chosen)} killed in {time.perf_counter() - total:.0f}s")
    print(json.dumps({"survived_or_error": bad}))
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        sys.exit(_child(sys.argv[2:]))
    sys.exit(main(sys.argv[1:]))
