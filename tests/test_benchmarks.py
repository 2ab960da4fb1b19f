"""Benchmarks are not tests: these only check that each one runs on tiny sizes and emits valid JSON."""

import json

from tools.bench import store_io


def test_store_io_tiny_emits_json(capsys):
    result = store_io.main(["--tiny"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == result
    assert printed["baseline"] and printed["slice_ratio"] > 0 and printed["store_slice_per_s"] > 0


def test_model_speed_tiny_emits_json(capsys):
    from tools.bench import model_speed

    result = model_speed.main(["--tiny", "--device", "cpu"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["ratios"] == result["ratios"] and printed["ratios"]["original_vs_original_infer"] == 1.0
    for name in ("batched", "per_step", "original", "monai_basicunet", "monai_segresnet"):
        assert printed["models"][name]["infer_voxels_per_s"] > 0


def test_predict_memory_tiny_emits_json(capsys):
    from tools.bench import predict_memory

    result = predict_memory.main(["--tiny"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == result and printed["small_peak_mb"] > printed["idle_process_mb"] * 0.5
    assert printed["ratio"] > 0 and printed["voxel_ratio"] == 4.0


def test_predict_speed_tiny_emits_json(capsys):
    from tools.bench import predict_speed

    result = predict_speed.main(["--tiny"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == result and printed["tcupgan_voxels_per_s"] > 0 and printed["monai_voxels_per_s"] > 0
