"""Benchmarks are not tests: these only check that each one runs on tiny sizes and emits valid JSON."""

import json

from tools.bench import store_io


def test_store_io_tiny_emits_json(capsys):
    result = store_io.main(["--tiny"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == result
    assert printed["baseline"] and printed["slice_ratio"] > 0 and printed["store_slice_per_s"] > 0
