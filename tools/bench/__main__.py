"""Every benchmark in one run: one JSON file and ``docs/benchmarks.md`` rendered from it.

    python -m tools.bench all --quick      # CPU-sized runs (~45 minutes on 2 cores); also `tcupgan bench`
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

from tcupgan.selection import sampling_for

ROOT = Path(__file__).resolve().parents[2]
#: Benchmarks that draw a figure, and where it goes under the docs folder.
FIGURES = {
    "volunteer_effort": "images/volunteer_effort.png",
    "transfer": "images/transfer.png",
    "galaxy": "images/galaxy_overlays.png",
}
QUICK_ARGS = {
    "store_io": ["--cubes", "2", "--reads", "100"],
    "model_speed": ["--repeats", "3"],
    "predict_speed": [],
    "predict_memory": [],
    "data_time": [],
    "upload_speed": ["--n", "50"],
    "volunteer_effort": ["--quick"],
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
        if name in FIGURES:
            argv += ["--figure", str(docs_dir / FIGURES[name])]
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # each prints its JSON; we print them together
            results["benchmarks"][name] = module.main(argv)
        results["benchmarks"][name]["wall_seconds"] = round(time.perf_counter() - start, 1)
        print(f"{name}: {results['benchmarks'][name]['wall_seconds']} s", flush=True)
    return results


def _row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _header(*titles: str) -> list[str]:
    """A Markdown table's title row and its separator."""
    return [_row(*titles), _row(*("---" for _ in titles))]


def render(results: dict) -> str:
    """``docs/benchmarks.md`` from one run's JSON: machine, then each benchmark against its baseline."""
    b, m = results["benchmarks"], results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"One run of `python -m tools.bench all --{results['mode']}` on {m['date']}: {m['cpu']}, "
        f"{m['cores']} cores, {m['memory_gib']} GiB, GPU: {m['gpu'] or 'none'}, torch {m['torch']}. "
        "Every number is measured against a baseline in the same run; ratios > 1 favour tcupgan "
        "unless noted.",
        "",
        *_header("benchmark", "tcupgan", "baseline", "ratio"),
    ]
    if "store_io" in b:
        s = b["store_io"]
        lines.append(
            _row(
                "random slice reads (store vs nibabel .nii.gz)",
                f"{s['store_slice_per_s']}/s",
                f"{s['nifti_slice_per_s']}/s",
                f"**{s['slice_ratio']}x**",
            )
        )
        lines.append(
            _row(
                "random crop reads",
                f"{s['store_crop_per_s']}/s",
                f"{s['nifti_crop_per_s']}/s",
                f"{s['crop_ratio']}x",
            )
        )
    if "model_speed" in b:
        s = b["model_speed"]
        r = s["ratios"]
        mode = s["default_convlstm_mode"]
        default = "the original's per-step convolution" if mode == "original" else mode
        lines.append(
            _row(
                f"generator inference, float32 (tcupgan's default here: {default})", "", "original float32",
                f"**{r['default_vs_original_infer']}x**",
            )
        )  # fmt: skip
        lines.append(
            _row(
                "generator inference, bf16 weights and activations", "", "original float32",
                f"**{r['default_bf16_vs_original_infer']}x** ({r['default_bf16_vs_original_bf16_infer']}x "
                "vs the original in bf16)",
            )
        )  # fmt: skip
        lines.append(
            _row("generator training step vs original", "", "original", f"{r['default_vs_original_train']}x")
        )
        for net in ("monai_basicunet", "monai_segresnet"):
            lines.append(
                _row(
                    f"{net} inference vs original (for scale)",
                    "",
                    "original",
                    f"{r[f'{net}_vs_original_infer']}x",
                )
            )
    if "predict_speed" in b:
        s = b["predict_speed"]
        lines.append(
            _row(
                "`predict` vs MONAI sliding window + SegResNet",
                f"{s['tcupgan_cubes_per_s']} cubes/s",
                f"{s['monai_cubes_per_s']} cubes/s",
                f"**{s['ratio']}x**",
            )
        )
        if "bf16_ratio" in s:
            lines.append(
                _row(
                    "`predict --precision bf16` vs the same MONAI run (float32)",
                    f"{s['tcupgan_bf16_cubes_per_s']} cubes/s ({s['bf16_vs_float32']}x our float32; "
                    f"{s['bf16_label_agreement']:.2%} same labels)",
                    f"{s['monai_cubes_per_s']} cubes/s",
                    f"**{s['bf16_ratio']}x**",
                )
            )
    if "predict_memory" in b:
        s = b["predict_memory"]
        lines.append(
            _row(
                f"`predict` peak memory, {s['voxel_ratio']}x the voxels",
                f"{s['large_peak_mb']} MB",
                f"{s['small_peak_mb']} MB",
                f"**{s['ratio']}x** (lower is better)",
            )
        )
    if "data_time" in b:
        s = b["data_time"]
        ours, base = s["configured"], s["in_process"]
        lines.append(
            _row(
                f"time waiting for data, share of training ({s['config']}, target < 10%)",
                f"{ours['data_share']:.1%} ({ours['num_workers']} worker)",
                f"{base['data_share']:.1%} (in process)",
                f"{ours['wait_seconds'] + ours['step_seconds']:.0f} s vs "
                f"{base['wait_seconds'] + base['step_seconds']:.0f} s",
            )
        )
    if "upload_speed" in b:
        s = b["upload_speed"]
        ours, base = s["tcupgan_no_faults"], s["recipe_no_faults"]
        lines.append(
            _row(
                "upload to the sandbox, no faults",
                f"{ours['subjects_per_s']} subjects/s",
                f"{base['subjects_per_s']} subjects/s",
                f"{s['speed_ratio_no_faults']}x",
            )
        )
        faulty = s["tcupgan_faults"]
        recipe = s.get("recipe_faults")
        recipe_text = (
            (
                f"{recipe['duplicates']} duplicates, {recipe['without_images']} without images, "
                f"{recipe['missing']} missing of {s.get('recipe_subjects', 20)}"
            )
            if recipe
            else "not run"
        )
        lines.append(
            _row(
                f"upload under faults (rate {s['fail_rate']})",
                f"{faulty['duplicates']} duplicates, {faulty['missing']} missing, {faulty['without_images']} "
                f"without images ({faulty['runs']} runs, {faulty['subjects_per_s']} subjects/s)",
                recipe_text,
                "",
            )
        )
    lines.append("")
    if "volunteer_effort" in b:
        lines += _effort(b["volunteer_effort"])
    if "transfer" in b:
        lines += _transfer(b["transfer"])
    if "galaxy" in b:
        lines += _galaxy(b["galaxy"])
    lines += [
        "",
        "Wall time per benchmark: " + ", ".join(f"{k} {v['wall_seconds']} s" for k, v in b.items()) + ".",
    ]
    if not results["machine"]["gpu"]:
        gpu = "cluster.md#measured-on-one-gpu-h200-2026-12-04"
        lines += ["", f"GPU timings (one H200, another run): [cluster.md]({gpu})."]
    reruns = {k: v["rerun"] for k, v in b.items() if "rerun" in v}
    if reruns:
        lines += [
            "",
            "Rerun alone with `--only` after the full run (each still against its own baseline in that "
            "rerun): " + ", ".join(f"{k} ({v})" for k, v in reruns.items()) + ".",
        ]
    return "\n".join(lines) + "\n"


def _share(mean: float, sd: float, spread: bool) -> str:
    return f"{mean:.0%} ± {sd:.0%}" if spread else f"{mean:.0%}"


def _shifted_picks(seeds: list[dict], strategy: str) -> str:
    """Picks from shifted cubes of all picks, over rounds and seeds: how well a strategy sorts the pool."""
    rounds = [r.get("shifted_picks", {}).get(strategy) for r in seeds]  # results since 2026-11-24
    if not all(rounds):
        return "–"
    picked = sum(r["curves"][strategy][-1][0] for r in seeds)  # slices corrected after the last round
    return f"{sum(map(sum, rounds))} of {picked}"


def _vs_random(row: dict, strategy: str, spread: bool) -> str:
    """Difference of mean reductions, and where there are seeds to pair (results since 2026-12-04, late), the
    slices against random's seed by seed: a lead inside the seed-to-seed spread shows as one."""
    text = f"{row.get('minus_random', 0):+.0%}"
    paired = row.get("vs_random")
    if not (paired and spread) or strategy == "random":
        return text
    return (
        f"{text}; {paired['slices_mean']:+.1f} ± {paired['slices_std']:.1f} slices per seed, fewer in "
        f"{paired['fewer']}, as many in {paired['equal']}, more in {paired['more']}"
    )


def _random_header(summary: dict) -> str:
    draws = summary.get("random_draws", 1)  # absent from results before 2026-12-05 (one draw)
    return f"vs random (the mean of its {draws} draws)" if draws > 1 else "vs random"


def _picks(s: dict, strategy: str) -> str:
    """How the strategy's rounds took its ranking, as the run recorded it (results since 2026-12-04, late);
    earlier results record only the option: absent before softrank (2026-12-04) meant the top for all."""
    recorded = s["seeds"][0].get("sampling") or {}  # a merged seed may hold strategies run before it
    how = recorded.get(strategy, sampling_for(strategy, s["settings"].get("sampling", "top")))
    return {
        "top": "the top of its ranking",
        "softrank": "drawn by softrank",
        "cubes": "drawn within its top cubes",
        None: "drawn at random",
    }[how]


def _more_rounds(settings: dict) -> str:
    more = settings.get("max_rounds") or settings["rounds"]  # absent from results before 2026-12-03
    return f", up to {more} for a strategy short of the target" if more > settings["rounds"] else ""


def _effort(s: dict) -> list[str]:
    seeds = s["seeds"]
    spread = len(seeds) > 1  # one seed has no spread to show
    familiar = s["settings"].get("familiar")  # absent from results before 2026-11-24
    average = s["settings"].get("average")  # absent from results before weight averaging (2026-11-24)
    lines = [
        "## Volunteer effort",
        "",
        f"`python -m tools.bench.volunteer_effort` ({len(seeds)} seed{'s' * (len(seeds) > 1)}; pool of "
        f"{seeds[0]['pool_slices']} "
        f"slices{f', {familiar} of its cubes unshifted' if familiar else ''}, shift strength "
        f"{s['settings'].get('shift', 1.0):g}; {s['settings']['rounds']} rounds of "
        f"{s['settings']['budget']} slices{_more_rounds(s['settings'])}; "
        f"fine-tuning {s['settings']['epochs']} epochs"
        f"{f' (weights averaged over the last {average:.0%})' if average else ''}, "
        f"{s['settings'].get('corrections_share', 0):.0%} of its crops from corrected cubes). Effort = "
        "slices corrected until held-out Dice reaches 95% of the Dice with every pool slice corrected; "
        "reduction = 1 - effort / pool. Share of the correction gain: (Dice - Dice with nothing corrected) / "
        "(Dice with every pool slice corrected - that), averaged over the rounds: no 95% cliff.",
        "",
        *_header(
            "strategy",
            "effort reduction (mean ± sd)" if spread else "effort reduction",
            _random_header(s["summary"]),
            "seeds not reaching the target",
            f"share of the correction gain, mean of rounds{' (± sd)' if spread else ''}",
            "picks from shifted cubes",
            "a round's picks",
        ),
    ]
    for name, row in s["summary"].items():
        if not isinstance(row, dict):
            continue
        if row["effort_reduction_mean"] is None:
            lines.append(
                _row(name, "no seed with signal", "", "", "", _shifted_picks(seeds, name), _picks(s, name))
            )
            continue
        gain = row.get("gain_share_mean")  # absent from results before 2026-11-24
        lines.append(
            _row(
                name,
                _share(row["effort_reduction_mean"], row["effort_reduction_std"], spread),
                _vs_random(row, name, spread),
                row["seeds_not_reaching_target"],
                "–" if gain is None else _share(gain, row["gain_share_std"], spread),
                _shifted_picks(seeds, name),
                _picks(s, name),
            )
        )
    if s["summary"]["seeds_without_signal"]:
        lines += [
            "",
            f"{s['summary']['seeds_without_signal']} of {len(seeds)} seeds had no signal (fine-tuned with "
            "nothing corrected, the model already reached 95% of the all-corrected Dice) and are left out "
            "of the table.",
        ]
    per_seed = {
        key: ", ".join(f"{r[key]:.3f}" for r in seeds)
        for key in ("base_dice", "uncorrected_dice", "all_corrected_dice")
        if all(key in r for r in seeds)  # uncorrected_dice: results since 2026-11-24
    }
    lines += [
        "",
        f"Held-out Dice per seed: base model {per_seed['base_dice']}; fine-tuned with nothing corrected "
        f"{per_seed.get('uncorrected_dice', '–')}; with every pool slice corrected "
        f"{per_seed['all_corrected_dice']}.",
        "",
        f"![Dice against slices corrected per strategy]({FIGURES['volunteer_effort']})",
        "",
        "What these numbers can and cannot say, and the five-seed measurement (one seed is a smoke test): "
        "[volunteer-effort.md](volunteer-effort.md).",
    ]
    return lines


def _transfer(s: dict) -> list[str]:
    settings = s["settings"]
    lines = [
        "",
        "## Transfer learning",
        "",
        f"`python -m tools.bench.transfer`: kelp tiles (synthetic, 4 bands, {settings['size']} px; "
        f"{s['train_tiles']} train, {s['test_tiles']} test) trained from scratch and fine-tuned from a "
        f"model pretrained on synthetic liver EM ({settings['em_cubes']} cubes, "
        f"{settings['pretrain_epochs']} epochs), same budget ({settings['epochs']} epochs x "
        f"{settings['samples']} crops), seeds {settings['seeds']}"
        + (f", fine-tuned with `{settings['finetune_args']}`" if settings.get("finetune_args") else "")
        + ". Test Dice, mean ± sd over seeds:",
        "",
        *_header("labelled tiles", "scratch", "fine-tuned", "gain"),
    ]
    for fraction, row in s["summary"].items():
        tiles = max(1, round(float(fraction) * s["train_tiles"]))
        lines.append(
            _row(
                f"{float(fraction):.0%} ({tiles})",
                f"{row['scratch']['mean']:.3f} ± {row['scratch']['sd']:.3f}",
                f"{row['fine-tuned']['mean']:.3f} ± {row['fine-tuned']['sd']:.3f}",
                f"**{row['gain']:+.3f}**",
            )
        )
    return lines + ["", f"![Dice against label fraction]({FIGURES['transfer']})"]


def _galaxy(s: dict) -> list[str]:
    m, v = s["model"], s["volunteers"]
    settings = s["settings"]
    lines = [
        "",
        "## Galaxy spiral arms and bars",
        "",
        f"`python -m tools.bench.galaxy`: trained on vote fractions of {settings['n']} synthetic galaxies "
        f"({settings['size']} px, {settings['epochs']} epochs x {settings['samples']} images, seg_loss "
        f"{settings.get('seg_loss') or 'from the config'}), scored on {s['test_galaxies']} test galaxies "
        "against the true structures. Baseline: the simulated volunteers' own majority (vote fraction ≥ "
        "0.5), which the model learns from.",
        "",
        *_header("", "model", "volunteers' majority"),
        _row("spiral-arm Dice", m["arm_dice_mean"], v["arm_dice_mean"]),
        _row("bar Dice (barred galaxies)", m["bar_dice_mean"], v["bar_dice_mean"]),
        _row(
            "bars found / false bars",
            f"{m['bars_found']} / {m['false_bars']}",
            f"{v['bars_found']} / {v['false_bars']}",
        ),  # fmt: skip
        _row(
            "bar length, median relative error",
            m["bar_length_median_rel_error"],
            v["bar_length_median_rel_error"],
        ),  # fmt: skip
        "",
        f"Mean absolute difference between the model's fractions and the volunteers' vote fractions: "
        f"{s['mean_abs_error_vs_vote_fraction']}.",
        "",
        f"![test galaxies: truth, volunteers, model]({FIGURES['galaxy']})",
    ]
    return lines


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
