"""Transfer on real EM: a new class with few labelled sections, from scratch or from a trained model.

The realistic transfer of a lab that has one model and wants another structure in the same images: a
TCuP-GAN trained through the product's path (``tcupgan plan`` → ``fit --plan``) on one task of the
ssTEM stack (``--source``, sections 0-11) starts the training of another task (``--target``) whose
labels cover only the first k sections (``--sections``). Every target run takes the product's path with
the same number of training steps (``--steps`` batches, each a generator and a discriminator step; the
learning rates anneal over them), and is scored by Dice on the held-out sections 12-14. Arms:

- ``scratch``: the target trained from a fresh initialisation;
- ``finetune``: ``--model.init_from SOURCE`` as ``tcupgan finetune --from`` does by default (every
  tensor that fits is loaded: the source's head and discriminator included);
- ``finetune_fresh_head``: the same without the source's output head (the class it names is not the
  target's);
- ``finetune_fresh_head_discriminator``: neither the head nor the discriminator (which judged the
  source's masks) loaded;
- ``finetune_frozen_encoder``: ``--model.freeze encoder``; ``finetune_slow_pretrained``:
  ``--model.pretrained_lr_scale 0.1`` (loaded layers learn at a tenth of the rate).

Each run is a process of its own. Prints one JSON document (and writes it to ``--out``).

    python studies/transfer/real_em.py --source membranes --target mitochondria --sections 1 3 12 \\
        --seeds 0 1 --steps 120 --save-source membranes.ckpt --out mitochondria.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tools.bench.real_em import build_store, train_tcupgan  # noqa: E402

# arm: (source tensors left out, more fit arguments); scratch starts from nothing
ARMS = {
    "scratch": ((), ()),
    "finetune": ((), ()),
    "finetune_fresh_head": (("generator.head.",), ()),
    "finetune_fresh_head_discriminator": (("generator.head.",), ("--model.reset_discriminator", "true")),
    "finetune_frozen_encoder": ((), ("--model.freeze", "encoder")),
    "finetune_slow_pretrained": ((), ("--model.pretrained_lr_scale", "0.1")),
}
NO_LIMIT = 10_000.0  # seconds: runs end by their step count


def source_weights(ckpt: Path, arm: str, work: Path) -> Path | None:
    """The checkpoint an arm starts from (``None``: scratch), without the parts the arm keeps fresh
    (written under ``work``)."""
    if arm == "scratch":
        return None
    drop = ARMS[arm][0]
    if not drop:
        return ckpt
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    kept = {k: v for k, v in state.items() if not k.startswith(drop)}
    path = work / f"{arm}.ckpt"
    torch.save({"state_dict": kept}, path)
    return path


def one_run(args: argparse.Namespace) -> dict:
    """One target (or source) training in this process."""
    torch.set_num_threads(args.threads)
    work = Path(args.work)
    store = build_store(work / "data", args.task, train=range(args.k))
    extra = ["--trainer.max_steps", str(2 * args.steps)]  # Lightning counts both networks' steps
    if args.init_from:
        extra += ["--model.init_from", args.init_from, *ARMS[args.arm][1]]
    result = train_tcupgan(store, work, NO_LIMIT, args.seed, extra)
    return {k: result[k] for k in ("dice", "steps", "plan", "precision")}


def spawn(task: str, k: int, steps: int, seed: int, work: Path, threads: int, arm: str,
          init_from: Path | None) -> dict:  # fmt: skip
    command = [sys.executable, __file__, "--one", "--task", task, "--k", str(k), "--steps", str(steps),
               "--seed", str(seed), "--work", str(work), "--threads", str(threads), "--arm", arm]  # fmt: skip
    if init_from:
        command += ["--init-from", str(init_from)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{task} k={k} seed={seed} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout[done.stdout.index("{") :])
    return {**result, "seconds": round(time.perf_counter() - start, 1)}


def study(args: argparse.Namespace) -> dict:
    """The source model (or ``--source-checkpoint``), then every arm x labelled sections x seed."""
    with tempfile.TemporaryDirectory(prefix="transfer-") as tmp:
        return _study(args, Path(tmp))


def _study(args: argparse.Namespace, tmp: Path) -> dict:
    if args.source_checkpoint:
        ckpt, source = Path(args.source_checkpoint), {"checkpoint": args.source_checkpoint}
    else:
        source = spawn(args.source, 12, args.source_steps, 0, tmp / "source", args.threads, "scratch", None)
        ckpt = tmp / "source" / "final.ckpt"
        if args.save_source:
            shutil.copyfile(ckpt, args.save_source)
    results: dict = {"source": {"task": args.source, "steps": args.source_steps, **source},
                     "target": args.target, "steps": args.steps, "runs": []}  # fmt: skip
    starts = {arm: source_weights(ckpt, arm, tmp) for arm in args.arms}
    for k in args.sections:
        for seed in args.seeds:
            for arm in args.arms:
                run = spawn(args.target, k, args.steps, seed, tmp / f"{arm}-{k}-{seed}", args.threads, arm,
                            starts[arm])  # fmt: skip
                results["runs"].append({"arm": arm, "sections": k, "seed": seed, **run})
                print(json.dumps(results["runs"][-1]), file=sys.stderr, flush=True)
    results["summary"] = {
        f"{arm} k={k}": round(float(np.mean([r["dice"] for r in results["runs"]
                                             if r["arm"] == arm and r["sections"] == k])), 3)
        for k in args.sections for arm in args.arms
    }  # fmt: skip
    return results


def figure(studies: list[dict], path: Path) -> None:
    """Held-out Dice against labelled target sections, one panel per study, a line per arm (dots: seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(studies), figsize=(4.6 * len(studies), 3.6), squeeze=False)
    for ax, results in zip(axes[0], studies, strict=True):
        runs = results["runs"]
        for i, arm in enumerate(dict.fromkeys(r["arm"] for r in runs)):
            mine = [r for r in runs if r["arm"] == arm]
            ks = sorted({r["sections"] for r in mine})
            means = [np.mean([r["dice"] for r in mine if r["sections"] == k]) for k in ks]
            ax.plot(ks, means, "-", color=f"C{i}", label=arm)
            ax.plot([r["sections"] for r in mine], [r["dice"] for r in mine], ".", color=f"C{i}")
        title = f"{results['source']['task']} → {results['target']}, {results['steps']} steps"
        ax.set(xscale="log", xlabel="labelled target sections", ylabel="held-out Dice (sections 12-14)",
               title=title)  # fmt: skip
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="membranes")
    p.add_argument("--target", default="mitochondria")
    p.add_argument("--sections", type=int, nargs="+", default=[1, 3, 12], help="labelled target sections")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=120, help="training steps of every target run")
    p.add_argument("--source-steps", type=int, default=300, help="training steps of the source model")
    p.add_argument("--source-checkpoint", help="a source model trained before (skips training one)")
    p.add_argument("--save-source", help="keep the source model trained here at this path")
    p.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS)[:4])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="also write the JSON here")
    p.add_argument("--figure", help="PNG: Dice against labelled sections (with --plot: of those studies)")
    p.add_argument("--plot", nargs="+", help="draw --figure from these JSON results instead of running")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--task", help=argparse.SUPPRESS)
    p.add_argument("--k", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--init-from", help=argparse.SUPPRESS)
    p.add_argument("--arm", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.plot:
        return figure([json.loads(Path(f).read_text()) for f in args.plot], Path(args.figure))
    results = one_run(args) if args.one else study(args)
    if args.figure and not args.one:
        figure([results], Path(args.figure))
    text = json.dumps(results, indent=1)
    print(text)
    if args.out and not args.one:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
