#!/bin/bash
# The checks that need a CUDA GPU, in one run (~8 minutes on an H200; the compile step can take longer):
#   0. the speed benchmarks below (3.), first;
#   1. `tcupgan fit` of the demo config at precision 32, bf16-mixed and 16-mixed: time, validation Dice,
#      finite losses;
#   2. `tcupgan predict` of the same cubes on CUDA (float32, bf16) and on the CPU: how far the stored
#      probabilities, labels and slice scores land from the CPU's;
#   3. the GPU timings of tools/bench model_speed (against the original layout; fused against eager gates),
#      predict_speed (against MONAI at the same window), data_time, brats_predict (a 4 x 155 x 240 x 240
#      case: float32, bf16, bf16 as CUDA graphs) and train_step (eager gates against fused and compiled at
#      the demo and BraTS crops) (JSON), each bench stopped after BENCH_LIMIT seconds (240);
#   4. a fit with `--model.compile true` (last: its first compilation is slow).
# Usage: OUT=gpu_check bash tools/gpu_check.sh  (EPOCHS=10, CUBES=10, COMPILE_LIMIT=600 seconds)
# Results of one run on an H200: docs/cluster.md, "Measured on one GPU".
set -u
export PYTHONUNBUFFERED=1
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(mkdir -p "${OUT:-gpu_check}" && cd "${OUT:-gpu_check}" && pwd)
EPOCHS=${EPOCHS:-10}; CUBES=${CUBES:-10}
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
exec > >(tee -a "$OUT/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, lightning, monai; print('torch', torch.__version__, 'lightning', lightning.__version__,
'monai', monai.__version__); assert torch.cuda.is_available(), 'no CUDA device'" || exit 1
seconds_since() { python3 -c "import time; print(round(time.time() - $1, 1))"; }

# the speed benchmarks first (issue 45's targets), each bounded, so a short lease still returns them
cd "$REPO" || exit 1
for bench in brats_predict predict_speed train_step model_speed data_time; do
  start=$(date +%s.%N)
  timeout "${BENCH_LIMIT:-240}" python3 -m "tools.bench.$bench" > "$OUT/$bench.json" 2> "$OUT/$bench.err"
  echo "BENCH $bench rc=$? seconds=$(seconds_since "$start")"
done

WORK=$(mktemp -d); cd "$WORK" || exit 1
TCUPGAN="python3 -m tcupgan.cli.main"
$TCUPGAN synth fatchecker --store demo.zarr --n "$CUBES" | tail -1

fit() {  # NAME PRECISION EPOCHS LIMIT [more fit arguments]
  local name=$1 precision=$2 epochs=$3 limit=$4 start; shift 4
  start=$(date +%s.%N)
  timeout "$limit" $TCUPGAN fit --config "$REPO/configs/demo.yaml" --data.store demo.zarr \
    --trainer.accelerator gpu --trainer.precision "$precision" --trainer.max_epochs "$epochs" \
    --trainer.default_root_dir "runs/$name" --trainer.enable_progress_bar false \
    --trainer.logger lightning.pytorch.loggers.CSVLogger --trainer.logger.save_dir "runs/$name" "$@" \
    > "fit_$name.log" 2>&1
  echo "FIT $name precision=$precision epochs=$epochs rc=$? seconds=$(seconds_since "$start")"
  python3 - "$name" <<'PY'
import csv, glob, math, sys
rows = [r for f in glob.glob(f"runs/{sys.argv[1]}/**/metrics.csv", recursive=True) for r in csv.DictReader(open(f))]
dice = [round(float(r["val/dice"]), 3) for r in rows if r.get("val/dice")]
losses = [float(v) for r in rows for k, v in r.items() if k.startswith("train/") and v]
print("  val/dice per validation:", dice, "| train losses logged:", len(losses),
      "all finite:", all(math.isfinite(v) for v in losses))
PY
}

fit fp32 32 "$EPOCHS" 600
fit bf16 bf16-mixed "$EPOCHS" 600
fit fp16 16-mixed "$EPOCHS" 600

CKPT=$(ls runs/fp32/*/*/checkpoints/last.ckpt | head -1)
for run in cuda32:cuda:32 cuda_bf16:cuda:bf16 cpu32:cpu:32; do
  IFS=: read -r name device precision <<< "$run"
  cp -r demo.zarr "p_$name.zarr"
  start=$(date +%s.%N)
  $TCUPGAN predict --ckpt "$CKPT" --store "p_$name.zarr" --device "$device" --precision "$precision" \
    > "predict_$name.log" 2>&1
  echo "PREDICT $name rc=$? seconds=$(seconds_since "$start")"
done
python3 - <<'PY'
import numpy as np
from tcupgan.data import CubeStore
cpu = CubeStore("p_cpu32.zarr")
for run in ("cuda32", "cuda_bf16"):
    gpu = CubeStore(f"p_{run}.zarr")
    prob, labels, scores = [], [], []
    for name in cpu.names():  # probabilities are stored as uint8 255ths: subtract as signed integers
        prob.append(np.abs(cpu[name]["probability"][:].astype(np.int16) - gpu[name]["probability"][:]).ravel())
        labels.append((cpu[name]["prediction"][:] != gpu[name]["prediction"][:]).ravel())
        scores.append(np.abs(cpu[name]["slice_realness"][:] - gpu[name]["slice_realness"][:]))
    prob, labels, scores = (np.concatenate(x) for x in (prob, labels, scores))
    print(f"{run} vs cpu32 over {prob.size} voxels: probability max {prob.max()}/255, mean {prob.mean():.4f}/255;"
          f" labels differ {labels.mean():.6f}; slice scores max diff {np.nanmax(scores):.4f}")
PY

fit compiled bf16-mixed 2 "${COMPILE_LIMIT:-600}" --model.compile true
cp fit_*.log predict_*.log "$OUT/"
rm -rf "$WORK"
