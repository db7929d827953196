"""The shared renderer of experiments/: hand-built documents, cells checked by hand."""

from experiments import render


def _metrics(tp, fn, fp, tn, auc):
    return {
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "tn": tn,
        "tpr": tp / (tp + fn),
        "fpr": fp / (fp + tn),
        "precision": None if tp + fp == 0 else tp / (tp + fp),
        "balanced_accuracy": 0.5 * (tp / (tp + fn) + tn / (fp + tn)),
        "auc": auc,
        "tpr_at_1pct_fpr": 0.25,
        "tpr_at_0.1pct_fpr": 0.125,
    }


RESULT = {
    "victim_num_labels": 2,
    "victim_labels": [4, 6],
    "gan_start_round": 7,
    "wall_seconds": 12.6,
    "final_main_task_accuracy": 0.91234,
    "global_model_accuracy": 0.91234,
    "attack_model_accuracy": None,
    "oracle_model_accuracy": 0.5,
    "d_gen": {"kept": 9, "generated": 80, "diversity": 1.234, "real_diversity": 5.0},
    "attacks": {
        "global_model": {
            "paper": _metrics(3, 1, 2, 6, 0.8125),
            "strict": _metrics(3, 1, 6, 10, 0.75),
        },
        "oracle": {
            "paper": _metrics(0, 4, 0, 8, 0.5),
            "strict": _metrics(4, 0, 1, 15, 1.0),
        },
        "gan": None,
    },
}

# attack, protocol -> TP FN FP TN TPR FPR precision bal.acc. AUC TPR@1% TPR@0.1%, by hand
EXPECTED_ROWS = {
    ("global_model", "paper"): "3 1 2 6 0.750 0.250 0.600 0.750 0.812 0.250 0.125",
    ("global_model", "strict"): "3 1 6 10 0.750 0.375 0.333 0.688 0.750 0.250 0.125",
    ("oracle", "paper"): "0 4 0 8 0.000 0.000 n/a 0.500 0.500 0.250 0.125",
    ("oracle", "strict"): "4 0 1 15 1.000 0.062 0.800 0.969 1.000 0.250 0.125",
}


def _table_rows(markdown):
    return [line.strip("| ").split(" | ") for line in markdown.splitlines() if line.startswith("|")]


def test_run_tables_prints_every_attack_and_protocol_with_its_numbers():
    out = render.run_tables(RESULT)
    assert out.splitlines()[0] == (
        "victim holds k=2 labels [4, 6]; generator started at round 7; wall time 13 s"
    )
    rows = _table_rows(out)
    assert ["0.9123", "0.9123", "n/a", "0.5000", "9 / 80", "1.23 (5.00)"] in rows
    by_attack = {(r[0], r[1]): " ".join(r[2:]) for r in rows if r[0] in RESULT["attacks"]}
    assert {k: v for k, v in by_attack.items() if k[0] != "gan"} == EXPECTED_ROWS
    assert ("gan", "(generator never started)") in by_attack
    header = next(r for r in rows if r[0] == "attack")
    width = {len(line.split("|")) for line in out.splitlines() if line.startswith("| gan")}
    assert len(header) == 13 and width == {len(header) + 2}  # the empty row keeps the columns


def test_run_summary_is_the_short_form_of_the_same_cells():
    out = render.run_summary(RESULT).splitlines()
    assert "final main-task accuracy: 0.9123" in out
    assert "generator started at round: 7" in out
    assert "attack classifier accuracy (gan): n/a" in out
    assert "            gan: not run (the generator never started)" in out
    for (attack, protocol), row in EXPECTED_ROWS.items():
        tp, fn, fp, tn, tpr, fpr, _, _, auc, tpr1, _ = row.split()
        line = next(x for x in out if x.startswith(f"{attack:>15s} / {protocol:<6s} "))
        assert line.split(f"{protocol:<6s} ", 1)[1] == (
            f"TP {tp}  FN {fn}  FP {fp}  TN {tn}  TPR {tpr}  FPR {fpr}  AUC {auc}  TPR@1%FPR {tpr1}"
        )
    assert len(out) == 3 + 4 + 4 + 1  # caption, accuracies, attack rows, the gan line


def _throughput(mode, clients, sps):
    return {
        "mode": mode,
        "clients": clients,
        "samples_per_second": sps,
        "compile_seconds": 1.5,
        "achieved_gflops": sps * 9e6 / 1e9,
        "fraction_of_peak": sps * 9e6 / 1e9 / 30.0,
        "cores_busy": 0.99,
    }


BENCHMARK = {
    "backend": "cpu",
    "jax": "0.0.test",
    "batch_size": 32,
    "records_per_client": 64,
    "repeats": 1,
    "sgemm_gflops": 30.0,
    "flops_per_sample": 9.2e6,
    "records": [
        _throughput("engine_seq", 2, 1000.0),
        _throughput("python_loop", 2, 500.0),
        _throughput("engine_seq", 4, 3000.0),
        _throughput("python_loop", 4, 1000.0),
        _throughput("python_loop_xla", 4, 1500.0),
        _throughput("single_client", 1, 800.0),
        {
            "mode": "generator_paper",
            "generator_steps_per_second": 5.0,
            "generated_samples_per_second": 400.0,
        },
        {"mode": "attack_classifier", "samples_per_second": 1234.0},
    ],
    "layer_profile_ms": {"conv1": 4.0},
    "engine_over_python_loop": {"2": 2.0, "4": 3.0},
    "engine_scaling_last_over_first": 3.0,
}


def test_benchmark_tables_ratios_and_rows():
    torch = [{"clients": 2, "threads": 2, "torch": "x", "samples_per_second": 100.0}]
    out = render.benchmark_tables(BENCHMARK, torch).splitlines()
    assert out[0].startswith("backend cpu, jax 0.0.test, CPU not recorded (ISA not recorded)")
    assert "batch 32, 64 records per client" in out[0]
    assert "sgemm 30 GFLOP/s; 9.20 MFLOP per training sample" in out[0]
    assert "| 2 | 2.00 | n/a | 10.00 (pytorch_loop) |" in out  # 1000/500, no xla, 1000/100
    assert "| 4 | 3.00 | 2.00 | n/a |" in out  # 3000/1000, 3000/1500, no torch
    assert "engine_seq samples/s at 4 clients / at 2 clients: 3.00" in out
    # GFLOP/s from the document's model FLOPs: 3000 x 9.2 MFLOP = 27.6 GFLOP/s, 92% of 30
    assert "| engine_seq | 4 | 3,000 | 1.50 | 27.6 | 92% | 0.99 |" in out
    assert "| single_client | 1 | 800 | 1.50 | 7.4 | 25% | 0.99 |" in out
    assert "| pytorch_loop (x, cpu, 2 threads) | 2 | 100 | | | | |" in out
    assert "| conv1 | 4.00 |" in out
    assert "| generator_paper | 5.0 | 400 |" in out
    assert "| attack_classifier |  | 1,234 |" in out
    modes = [line.split(" | ")[0] for line in out if line.startswith("| ")]
    assert (
        modes.index("| engine_seq") < modes.index("| python_loop") < modes.index("| single_client")
    )


def test_benchmark_tables_accelerator_pytorch_variants_and_sweeps():
    """Off CPU the engine's default is the vmapped round; the fastest PyTorch variant of
    each count is the one compared; sweep rows give each batching's speed-up."""
    sweep = [
        {"mode": "sweep_sequential", "runs": 4, "run_batching": "-", "auto_picks": "vmap",
         "seconds_per_run_round": 0.2},
        {"mode": "sweep_batched", "runs": 4, "run_batching": "vmap", "auto_picks": "vmap",
         "seconds_per_run_round": 0.05},
        {"mode": "sweep_batched", "runs": 4, "run_batching": "map", "auto_picks": "vmap",
         "seconds_per_run_round": 0.25},
    ]  # fmt: skip
    torch = [
        {"mode": f"pytorch_{v}", "clients": 2, "threads": 8, "torch": "t", "device": "cuda",
         "samples_per_second": sps}
        for v, sps in (("eager", 200.0), ("compile", 400.0), ("channels_last", 100.0))
    ]  # fmt: skip
    torch.append({"mode": "pytorch_compile", "clients": 4, "error": "no compiler"})
    doc = dict(
        BENCHMARK,
        backend="gpu",
        cpu={"model": "Some CPU", "isa": ["avx2", "fma"]},
        records=[*BENCHMARK["records"], _throughput("engine_vmap", 2, 4000.0),
                 _throughput("engine_vmap", 4, 6000.0), *torch, *sweep],
    )  # fmt: skip
    out = render.benchmark_tables(doc, []).splitlines()
    assert "CPU Some CPU (avx2, fma)" in out[0]
    header = "| clients | engine_vmap / python_loop | engine_vmap / python_loop_xla | "
    assert header + "engine_vmap / fastest pytorch |" in out
    assert "| 2 | 8.00 | n/a | 10.00 (pytorch_compile) |" in out  # 4000/500, 4000/400
    assert "| 4 | 6.00 | 4.00 | n/a |" in out  # the failed variant is no row and no ratio
    assert "| pytorch_compile (t, cuda, 8 threads) | 2 | 400 | | | | |" in out
    assert not any("no compiler" in line for line in out)
    assert "| 4 | 0.2000 | 0.0500 (4.00x) | 0.2500 (0.80x) | vmap |" in out


def test_benchmark_tables_mesh_rows_and_their_ratio_to_pytorch():
    """The round sharded over the CPU's devices is labelled with its device count and
    gets its own ratio to the fastest PyTorch variant; a count without it says n/a."""
    torch = [
        {"mode": "pytorch_eager", "clients": n, "threads": 2, "torch": "t",
         "samples_per_second": sps}
        for n, sps in ((2, 500.0), (4, 2000.0))
    ]  # fmt: skip
    mesh = dict(_throughput("engine_mesh", 2, 1500.0), devices=2)
    doc = dict(BENCHMARK, records=[*BENCHMARK["records"], mesh, *torch])
    doc["sgemm_gflops_measured"] = [21.0, 30.0]
    out = render.benchmark_tables(doc, []).splitlines()
    assert "sgemm 30 GFLOP/s (the faster of 21 and 30, at start and end);" in out[0]
    assert "| engine_mesh (2 devices) | 2 | 1,500 | 1.50 | 13.8 | 46% | 0.99 |" in out
    assert out.index("| engine_mesh (2 devices) | 2 | 1,500 | 1.50 | 13.8 | 46% | 0.99 |") < next(
        i for i, line in enumerate(out) if line.startswith("| python_loop |")
    )
    assert "engine_seq / fastest pytorch | engine_mesh / fastest pytorch |" in "\n".join(out)
    # 1000/500 and 1500/500 at 2 clients; 3000/2000 and no mesh row at 4
    assert "| 2 | 2.00 | n/a | 2.00 (pytorch_eager) | 3.00 (pytorch_eager) |" in out
    assert "| 4 | 3.00 | 2.00 | 1.50 (pytorch_eager) | n/a |" in out


def test_benchmark_tables_one_row_per_mode_and_count_when_clients_include_1():
    doc = dict(BENCHMARK, records=[_throughput("engine_seq", 1, 100.0)])
    doc.pop("engine_scaling_last_over_first")
    out = render.benchmark_tables(doc, []).splitlines()
    assert sum(line.startswith("| engine_seq | 1 |") for line in out) == 1


def test_lever_table_ratios_to_the_first_baseline_and_failed_levers_kept():
    from studies import levers

    results = [
        {"lever": "baseline", "what": "as shipped", "rows": {5: 1000.0, 20: 2000.0}},
        {"lever": "xnnpack", "what": "XNNPACK", "rows": {5: 1500.0, 20: 1000.0}},
        {"lever": "onednn", "what": "oneDNN", "failed": "Unknown flag"},
        {"lever": "baseline", "what": "as shipped", "rows": {5: 900.0, 20: 2100.0}},
    ]
    lines = levers.table(results, [5, 20]).splitlines()
    assert lines[0] == "| lever | what it changes | 5 clients | 20 clients |"
    assert lines[3] == "| xnnpack | XNNPACK | 1,500 (1.50x) | 1,000 (0.50x) |"
    assert lines[4] == "| onednn | oneDNN (Unknown flag) | failed | failed |"
    assert lines[5] == "| baseline | as shipped | 900 (0.90x) | 2,100 (1.05x) |"


def test_lever_passes_interleave_the_levers_with_baselines():
    from studies import levers

    assert levers.sequence(["xnnpack"], 1) == ["baseline", "xnnpack", "baseline"]
    assert levers.sequence(["a", "baseline", "b"], 2) == [
        "baseline", "a", "b", "baseline", "a", "b", "baseline"
    ]  # fmt: skip


def _study_stdout(script: str, *args: str) -> str:
    """What ``studies/<script> <args>`` prints (it must exit 0 within 10 minutes)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, f"studies/{script}", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return done.stdout


def test_step_levers_compute_the_engines_function():
    """studies/step_levers.py: every rewritten network (sliced patches, a fused
    pooling derivative, ReLU before max-pool, the input gradient as a convolution, the
    row-shifted convolution, XLA's convolutions with and without canonical derivatives,
    donated buffers) ends its steps at the engine's parameters,
    up to float rounding; a wrong rewrite (a bad custom derivative) would not. The bf16
    variants end within bf16 rounding of them, and not at them (a cast that did not
    happen would leave them at the f32 parameters)."""
    import re

    stdout = _study_stdout("step_levers.py", "--steps=3", "--repeats=1")
    rows = re.findall(r"^\| (\w+) \| [\d.]+ \| [\d,]+ \| [\d.]+ \| ([\d.e+-]+) \|$", stdout, re.M)
    assert [name for name, _ in rows] == [
        "engine",
        "sliced_patches",
        "fused_pool_grad",
        "relu_then_pool",
        "dx_as_conv",
        "row_shift",
        "conv2_xla",
        "convs_xla",
        "conv2_xla_canonical",
        "convs_xla_canonical",
        "donated",
        "bf16_dense",
        "bf16_matmuls",
        "bf16_activations",
    ]
    f32 = [float(diff) for name, diff in rows if not name.startswith("bf16")]
    bf16 = [float(diff) for name, diff in rows if name.startswith("bf16")]
    assert all(diff < 1e-5 for diff in f32), rows
    assert all(1e-5 < diff < 2e-2 for diff in bf16), rows


def test_step_profile_attributes_every_matmul_to_its_layer():
    """studies/step_profile.py under the real profiler: every layer's forward and
    backward appears with its matrix products' time and rate, and the FLOP count of the
    products is the Table II network's (a walker that missed the scan's body, or counted
    a product twice, would print another)."""
    import re

    stdout = _study_stdout("step_profile.py", "--steps=2", "--repeats=2")
    # Per step of 64: forward 2*M*N*K of conv 1, conv 2, dense 1, dense 2; backward the
    # same for every kernel gradient and for every input gradient but the first conv's.
    forward = 2 * (36864 * 16 * 25 + 4096 * 32 * 400 + 64 * 1000 * 512 + 64 * 10 * 1000)
    backward = forward + 2 * (4096 * 400 * 32 + 64 * 512 * 1000 + 64 * 1000 * 10)
    assert f"matrix-product FLOP per step: {forward + backward:,}" in stdout
    rows = dict(re.findall(r"^\| ((?:forward|backward) \w+) \| ([\d.]+ \| \d*) \|", stdout, re.M))
    for layer in ("Conv_0", "Conv_1", "Dense_0", "Dense_1"):
        for direction in ("forward", "backward"):
            ms, rate = rows[f"{direction} {layer}"].split(" | ")
            assert float(ms) > 0 and int(rate) > 0, (layer, direction, rows)
    assert "backward max_pool_2x2" in rows and "forward max_pool_2x2" in rows
    shares = re.findall(r"\| (\d+)% \|$", stdout, re.M)
    assert 95 <= sum(map(int, shares)) <= 105, shares


def test_step_profile_attributes_fusions_without_an_op_name():
    """A fusion XLA made without an op_name (bf16 normalisation makes them) takes the
    layer its instructions name; an operation with none at all is kept, as 'no op_name',
    never dropped; control flow (whose time is its body's) is not counted twice."""
    from studies import hlo_ops

    body = "jit(f)/while/body/closed_call"
    conv = f"{body}/transpose(jvp(Net))/Conv_1"
    hlo = f"""
%fused_computation.1 (p0: f32[4]) -> f32[4] {{
  %p0 = f32[4]{{0}} parameter(0)
  %c = bf16[4]{{0}} convert(%p0), metadata={{op_name="{body}"}}
  %a = f32[4]{{0}} add(%p0, %p0), metadata={{op_name="{conv}/add_any"}}
  ROOT %s = f32[4]{{0}} select(%p0, %a, %p0), metadata={{op_name="{conv}/pad"}}
}}

%body (arg: f32[4]) -> f32[4] {{
  %arg = f32[4]{{0}} parameter(0)
  %add_select_fusion = f32[4]{{0}} fusion(%arg), kind=kLoop, calls=%fused_computation.1
  %copy.3 = f32[4]{{0}} copy(%add_select_fusion)
  ROOT %m = f32[4]{{0}} multiply(%copy.3, %arg), metadata={{op_name="{body}/jvp(Net)/Dense_0/mul"}}
}}

ENTRY %main (x: f32[4]) -> f32[4] {{
  %x = f32[4]{{0}} parameter(0)
  ROOT %while.1 = f32[4]{{0}} while(%x), condition=%cond, body=%body
}}
"""
    found = hlo_ops.instructions(hlo)
    assert found["add_select_fusion"][0].startswith("backward Conv_1/")
    assert found["copy.3"] == ("no op_name copy", False)
    assert found["m"] == ("forward Dense_0/mul", False)
    assert "while.1" not in found and "x" not in found
    assert hlo_ops.layer(found["copy.3"][0]) == "no op_name"


def test_selection_probe_reads_back_every_checked_generator(tmp_path):
    """studies/selection_probe.py on a finished run: the generator restored from each
    checkpoint has the score the run logged at that check, and the pixel rule's pick is
    the generator the run kept, with the run's own attack accuracy; a workdir of another
    config is refused."""
    import json
    import subprocess
    import sys

    import pytest

    from configs import demo
    from fedgan_jax.core.errors import WorkdirError
    from fedgan_jax.driver import experiment

    config_file = tmp_path / "probe_config.py"
    config_file.write_text(
        "from tests.conftest import tiny_config\n\n\n"
        "def get_config():\n"
        "    c = tiny_config()\n"
        "    c.fl.rounds, c.gan.trigger_round = 5, 2\n"
        "    c.gan.select, c.gan.select_every, c.checkpoint.keep = 'own_mmd', 1, 10\n"
        "    return c\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        config = __import__("probe_config").get_config()
    finally:
        sys.path.remove(str(tmp_path))
    workdir, out = str(tmp_path / "run"), tmp_path / "probe.json"
    result = experiment.train_and_evaluate(config, workdir, progress=False)
    subprocess.run(
        [sys.executable, "studies/selection_probe.py", f"--config={config_file}",
         f"--workdir={workdir}", f"--json={out}"],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    probe = json.loads(out.read_text())
    assert [r["round"] for r in probe["rows"]] == [2, 3, 4, 5]
    for row in probe["rows"]:
        assert row["pixel_mmd"] == pytest.approx(row["logged_score"], rel=1e-6)
    assert len({r["pixel_mmd"] for r in probe["rows"]}) == 4  # four different generators
    kept = probe["rules"]["pixel_mmd"]
    assert kept["round"] == result["generator_selection"]["round"]
    assert kept["attack_accuracy"] == pytest.approx(result["attack_model_accuracy"], abs=1e-9)
    assert probe["rules"]["last"]["round"] == 5
    with pytest.raises(WorkdirError, match="another experiment"):
        experiment.read_back(demo.get_config(), workdir)
    for row in probe["rows"]:  # the oracle's reading: shares
        assert 0.0 <= min(row[k] for k in ("oracle_reads_victim", "victim_read_as_own")) <= 1.0
    picks_out = tmp_path / "picks.json"  # only the picks fitted, plus pools of the 2 best
    subprocess.run(
        [sys.executable, "studies/selection_probe.py", f"--config={config_file}",
         f"--workdir={workdir}", f"--json={picks_out}", "--fit=picks", "--pool=2",
         "--samples=8,1"],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    picks = json.loads(picks_out.read_text())
    assert "attack_accuracy" not in picks["rows"][0]
    for rule in ("pixel_mmd", "feature_mmd", "last"):
        pick = picks["rules"][rule]
        assert {k: pick[k] for k in ("round", "attack_accuracy")} == probe["rules"][rule]
        # D_gen rebuilt at the run's own size (8 a class) is the run's; at 1 a class, 10.
        by_size = pick["by_samples"]
        assert by_size["8"] == {k: v for k, v in pick.items() if k.startswith(("att", "dgen"))}
        assert (pick["dgen_generated"], by_size["1"]["dgen_generated"]) == (80, 10)
    kept = picks["rules"]["pixel_mmd"]
    assert (kept["dgen_generated"], kept["dgen_kept"]) == (80, result["d_gen"]["kept"])
    for score in ("pixel_mmd", "feature_mmd"):
        ranked = sorted(probe["rows"], key=lambda r: r[score])
        assert picks["rules"][f"{score}_pool2"]["round"] == [r["round"] for r in ranked[:2]]
    figure = tmp_path / "trajectories.png"
    subprocess.run(
        [sys.executable, "studies/selection_probe.py", f"--compare=a={out},b={out}",
         f"--figure={figure}"],
        capture_output=True, text=True, timeout=600, check=True,
    )  # fmt: skip
    assert figure.read_bytes()[:4] == b"\x89PNG"
