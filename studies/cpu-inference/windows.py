"""``predict`` of the real EM held-out cube (3 sections of 1024²) with one window: seconds, peak memory.

One setting per process, so that the peak (``ru_maxrss``) is this setting's: builds the membranes store
as ``tools/bench/real_em.py`` does and an untrained checkpoint at the paper's widths (speed and memory do
not depend on the weights), predicts once to warm up (allocations, oneDNN's set-up for the window's
shape), then reports the faster of two timed predicts. Prints one JSON line.

    python studies/cpu-inference/windows.py --roi 512 --precision 32 --window-batch 4
    python studies/cpu-inference/windows.py --roi 1024 --precision bf16 --window-batch 1
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tcupgan.inference import predict_store  # noqa: E402
from tools.bench.common import save_checkpoint  # noqa: E402
from tools.bench.real_em import build_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--roi", type=int, default=1024, help="in-plane window size (px)")
    parser.add_argument("--precision", choices=["32", "bf16"], default="32")
    parser.add_argument("--window-batch", type=int, default=4, help="windows per generator call")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = build_store(Path(tmp), "membranes")
        ckpt = save_checkpoint(Path(tmp) / "m.ckpt", (16, 32, 48, 64, 128))
        options = {"cubes": ["test"], "overwrite": True, "device": "cpu", "precision": args.precision,
                   "roi": (1, args.roi, args.roi), "window_batch": args.window_batch}  # fmt: skip
        predict_store(ckpt, store, **options)
        seconds = []
        for _ in range(2):
            start = time.perf_counter()
            predict_store(ckpt, store, **options)
            seconds.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(json.dumps({**vars(args), "seconds": round(min(seconds), 2), "peak_rss_mb": peak_mb}))


if __name__ == "__main__":
    main()
