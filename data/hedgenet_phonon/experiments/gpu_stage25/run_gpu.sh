#!/bin/bash
# The GPU machine's part of the stage-25 candidate (2026-11-28): train_config.yaml (2-minute budget) from the
# stage-24 weights, its output folder pointed into OUTDIR so that every epoch's checkpoint comes back even if the
# call is cut off.  Prepared here, from the repository root (the GPU image has PyTorch, not these; no network):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 -d .whl ase==3.29.0 e3nn==0.4.4 mace-torch==0.3.16 torch-ema==0.3 vesin==0.6.2
#   tar czf .gpu/data.tgz out/phonon_dataset_large/{train,valid}.xyz out/phonon_dataset_slides/train.xyz \
#       out/phonon_dataset_{thermal_extra,thermal_extra2}/train.xyz out/hedgenet_phonon_stage24/hedgenet_phonon.pt
# There (repository root, .whl and .gpu carried along):
#   bash data/hedgenet_phonon/experiments/gpu_stage25/run_gpu.sh [TRAIN_LIMIT_S [OUTDIR]]
# PY and DEVICE may name another interpreter / device (a dry run of this script's flow on a CPU machine).
TLIM=${1:-170}; OUT=${2:-${OUT:-/tmp}}
PY=${PY:-python3}; DEVICE=${DEVICE:-cuda}
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
tar xzf .gpu/data.tgz || exit 1
E=data/hedgenet_phonon/experiments/gpu_stage25
mkdir -p $OUT/run
# the same config, its output folder in OUTDIR (kept next to the original: its data paths are relative to it)
sed "s#^output_dir:.*#output_dir: $OUT/run#" $E/train_config.yaml > $E/train_config_device.yaml
echo "setup $(elapsed) s"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $OUT/gpu.txt 2>&1
PYTHONUNBUFFERED=1 timeout $TLIM $PY -m mlepi_ase train-phonon $E/train_config_device.yaml --device $DEVICE --quiet \
  > $OUT/train.stdout 2>&1
echo "training rc $? at $(elapsed) s"
[ -f $OUT/run/hedgenet_phonon.pt ] || $PY -m mlepi_ase train-phonon $E/train_config_device.yaml \
  --export-last $OUT/run/hedgenet_phonon.pt
grep -E "epoch|stopped|best model" $OUT/run/train.log | cut -c 12-170 | tail -n 16
echo "total $(elapsed) s"
