"""Every benchmark in one run: one JSON file and ``docs/benchmarks.md`` rendered from it.

    python -m tools.bench all --quick      # CPU-sized runs (~30 minutes on 2 cores); also `tcupgan bench`
    python -m tools.bench all --tiny       # smoke run (what the tests do), numbers meaningless
    python -m tools.bench all --quick --only predict_memory   # rerun one, update the JSON and docs
    python -m tools.bench render           # re-render docs/benchmarks.md from docs/benchmarks.json

Each benchmark measures its own baseline in the same run, so the document shows ratios, not absolute
numbers from different days.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import platform
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
QUICK_ARGS = {
    "store_io": ["--cubes", "2", "--reads", "100"],
    "model_speed": ["--repeats", "3"],
    "predict_speed": [],
    "predict_memory": [],
    "data_time": [],
    "upload_speed": [],
    "harvest_speed": [],
    "real_em": ["--task", "mitochondria", "--budget", "240"],
    "transfer": ["--quick"],
    "galaxy": ["--quick"],
}


def machine() -> dict:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory, 1),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def run_all(names: list[str], tiny: bool, docs_dir: Path) -> dict:
    results: dict = {"machine": machine(), "mode": "tiny" if tiny else "quick", "benchmarks": {}}
    for name in names:
        module = importlib.import_module(f"tools.bench.{name}")
        argv = ["--tiny"] if tiny else list(QUICK_ARGS[name])
        if hasattr(module, "FIGURE"):
            argv += ["--figure", str(docs_dir / module.FIGURE)]
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # each prints its JSON; we print them together
            results["benchmarks"][name] = module.main(argv)
        results["benchmarks"][name]["wall_seconds"] = round(time.perf_counter() - start, 1)
        print(f"{name}: {results['benchmarks'][name]['wall_seconds']} s", flush=True)
    return results


def render(results: dict) -> str:
    """``docs/benchmarks.md`` from one run's JSON: the machine, a table of every benchmark's rows against
    its baseline, then the sections of those that have one. Each benchmark module renders its own
    (``rows`` and ``section``); this only collects them."""
    b, m = results["benchmarks"], results["machine"]
    modules = {name: importlib.import_module(f"tools.bench.{name}") for name in b}
    lines = [
        "# Benchmarks",
        "",
        f"One run of `python -m tools.bench all --{results['mode']}` on {m['date']}: {m['cpu']}, "
        f"{m['cores']} cores, {m['memory_gib']} GiB, GPU: {m['gpu'] or 'none'}, torch {m['torch']}. "
        "Every number is measured against a baseline in the same run; ratios > 1 favour tcupgan "
        "unless noted.",
        "",
        "| benchmark | tcupgan | baseline | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for name, module in modules.items():
        if hasattr(module, "rows"):
            lines += ["| " + " | ".join(map(str, row)) + " |" for row in module.rows(b[name])]
    for name, module in modules.items():
        if hasattr(module, "section"):
            lines += ["", *module.section(b[name])]
    lines += [
        "",
        "Wall time per benchmark: " + ", ".join(f"{k} {v['wall_seconds']} s" for k, v in b.items()) + ".",
    ]
    reused = [k for k, v in b.items() if v.get("freed_memory_reused")]
    if reused:
        lines += [
            "",
            "Run with freed CPU memory kept for reuse in every process, baselines included, as "
            f"tcupgan's training and predict do (`tcupgan/allocator.py`): {', '.join(reused)}.",
        ]
    reruns = {k: v["rerun"] for k, v in b.items() if "rerun" in v}
    if reruns:
        lines += [
            "",
            "Rerun alone with `--only` after the full run (each still against its own baseline in that "
            "rerun): " + ", ".join(f"{k} ({v})" for k, v in reruns.items()) + ".",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "command", choices=["all", "render"], help="run benchmarks, or re-render the docs from --json"
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="CPU-sized runs")
    size.add_argument("--tiny", action="store_true", help="smoke sizes")
    parser.add_argument("--only", nargs="+", choices=list(QUICK_ARGS), help="a subset of benchmarks")
    parser.add_argument("--json", help="the combined JSON (default: benchmarks.json next to benchmarks.md)")
    parser.add_argument("--docs", default=str(ROOT / "docs"), help="folder for benchmarks.md and its figure")
    args = parser.parse_args(argv)
    docs = Path(args.docs)
    json_path = Path(args.json) if args.json else docs / "benchmarks.json"
    if args.command == "render":
        results = json.loads(json_path.read_text())
    else:
        if not (args.quick or args.tiny):
            parser.error("all needs --quick or --tiny")
        results = run_all(args.only or list(QUICK_ARGS), args.tiny, docs)
        if args.only and json_path.exists():  # a partial rerun updates an earlier full run
            earlier = json.loads(json_path.read_text())
            for result in results["benchmarks"].values():
                result["rerun"] = results["machine"]["date"]
            earlier["benchmarks"].update(results["benchmarks"])
            results = earlier
        json_path.write_text(json.dumps(results, indent=1))
        print(f"wrote {json_path}")
    (docs / "benchmarks.md").write_text(render(results))
    print(f"wrote {docs / 'benchmarks.md'}")


if __name__ == "__main__":
    main()
