"""Benchmarks are not tests: these only check that each one runs on tiny sizes and emits valid JSON."""

import json
from pathlib import Path

import pytest

from tools.bench import real_em, store_io


@pytest.mark.slow
def test_store_io_tiny_emits_json(capsys):
    result = store_io.main(["--tiny"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == result
    assert printed["baseline"] and printed["slice_ratio"] > 0 and printed["store_slice_per_s"] > 0


@pytest.mark.slow
def test_model_speed_tiny_emits_json(capsys):
    from tools.bench import model_speed

    result = model_speed.main(["--tiny", "--device", "cpu"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["ratios"] == result["ratios"]
    names = ("original_layout", "original_layout_bf16", "tcupgan", "tcupgan_per_step", "tcupgan_batched",
             "tcupgan_bf16", "monai_basicunet", "monai_segresnet")  # fmt: skip
    for name in names:
        assert printed["models"][name]["infer_voxels_per_s"] > 0
    assert printed["models"]["tcupgan_bf16"]["dtype"] == "bfloat16"
    # the original layout runs no ConvLSTM at full resolution past its first level: fewer FLOPs per cube
    assert (
        printed["models"]["original_layout"]["gflop_per_cube"]
        < printed["models"]["tcupgan"]["gflop_per_cube"]
    )


def test_brats_predict_tiny_times_both_precisions(capsys):
    from tools.bench import brats_predict

    result = brats_predict.main(["--tiny"])
    assert json.loads(capsys.readouterr().out) == result
    assert set(result["seconds_per_cube"]) == {"32", "bf16"}
    assert all(t["median_s"] > 0 for t in result["seconds_per_cube"].values())


def test_train_step_tiny_times_eager_and_fused_gates_at_both_precisions(capsys):
    from tools.bench import train_step

    result = train_step.main(["--tiny"])
    assert json.loads(capsys.readouterr().out) == result
    tiny = result["crops"]["tiny"]
    assert set(tiny["seconds_per_step"]) == {"eager_fp32", "eager_bf16", "fused_fp32", "fused_bf16"}
    assert all(s > 0 for s in tiny["seconds_per_step"].values())
    assert tiny["vs_eager_same_precision"]["eager_bf16"] == 1.0


@pytest.mark.slow
def test_predict_memory_tiny_emits_json(capsys):
    from tools.bench import predict_memory

    result = predict_memory.main(["--tiny"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == result and printed["small_peak_mb"] > printed["idle_process_mb"] * 0.5
    assert printed["ratio"] < 1.5 and printed["voxel_ratio"] == 4.0  # memory follows the window, not the cube


@pytest.mark.slow
def test_predict_speed_tiny_emits_json(capsys):
    from tools.bench import predict_speed

    result = predict_speed.main(["--tiny"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == result and printed["tcupgan_voxels_per_s"] > 0 and printed["monai_voxels_per_s"] > 0


@pytest.mark.slow
def test_bench_all_tiny_writes_json_and_renders_the_document(tmp_path):
    """``python -m tools.bench all --tiny``: every benchmark emits JSON, and docs/benchmarks.md is rendered
    from it, each benchmark's rows and section by its own module; the upload under faults must leave no
    duplicate."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "bench.json"
    cmd = [sys.executable, "-m", "tools.bench", "all", "--tiny", "--json", str(out), "--docs", str(tmp_path)]
    subprocess.run(cmd, cwd=root, check=True, capture_output=True, timeout=900)
    results = json.loads(out.read_text())
    bench = results["benchmarks"]
    assert set(bench) == {
        "store_io",
        "model_speed",
        "predict_speed",
        "predict_memory",
        "data_time",
        "upload_speed",
        "harvest_speed",
        "real_em",
        "transfer",
        "galaxy",
    }
    upload, killed = bench["upload_speed"], bench["upload_speed"]["tcupgan_faults_kills"]
    assert (
        killed["killed"] == 1 and killed["duplicates"] == killed["missing"] == killed["without_images"] == 0
    )
    assert upload["tcupgan_latency_0.15"]["in_set"] == 8 and upload["recipe_latency_0"]["in_set"] == 4
    harvested = bench["harvest_speed"]["tcupgan"]
    assert harvested["classifications_used"] == 600 and harvested["slices_written"] == 60
    doc = (tmp_path / "benchmarks.md").read_text()
    for text in ("random slice reads", "upload under faults", "## Transfer learning",
                 "## Galaxy spiral arms and bars", "bar length, median relative error"):  # fmt: skip
        assert text in doc
    for figure in ("transfer.png", "galaxy_overlays.png"):
        assert (tmp_path / "images" / figure).stat().st_size > 10_000
    transfer = bench["transfer"]["summary"]
    assert set(transfer) == {"0.25", "1.0"} and all(0 <= r["scratch"]["mean"] <= 1 for r in transfer.values())
    assert bench["galaxy"]["test_galaxies"] == 2
    real = bench["real_em"]  # skipped, with its reason, where ../shared/data is absent
    if "skipped" not in real:
        models = real["tasks"]["mitochondria"]["5"]
        assert set(models) == set(real_em.DEFAULT_MODELS)  # nnU-Net where it is installed
        for r in models.values():
            assert 0 <= r["dice"] <= 1 and r["steps"] >= 1 and r["peak_memory_mb"] > 0
        # the MONAI baselines train at the precision TCuP-GAN's plan chose, not handicapped in float32
        monai = {r["precision"] for name, r in models.items() if name.startswith("monai_")}
        assert monai == {models["tcupgan"]["precision"]}
        assert "## Real EM" in doc and (tmp_path / "images" / "real_em.png").stat().st_size > 10_000
    assert 0 <= bench["data_time"]["configured"]["data_share"] < 1 and "time waiting for data" in doc
