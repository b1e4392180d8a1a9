#!/bin/bash
# The GPU machine's part of stage 23 (2026-11-27): both candidates (train_config_bs64.yaml, train_config_bs128.yaml)
# side by side from the stage-22 weights, the CUDA tests beside them, then, on the idle GPU,
# benchmarks/bench_phonon_model.py --device cuda (phonon_model_cost_cuda.json) if time is left.
# Prepared here, from the repository root (the GPU image has PyTorch and pytest, not these; no network there):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_17_x86_64 -d .whl ase==3.29.0 e3nn==0.4.4 mace-torch==0.3.16 torch-ema==0.3 vesin==0.6.2
#   tar czf .gpu/data.tgz out/phonon_dataset_large/{train,valid,test,test_6x6}.xyz \
#       out/phonon_dataset_slides/{train,test}.xyz out/phonon_dataset_{thermal_extra,thermal_extra2}/train.xyz \
#       out/phonon_dataset_hot/test_6x6.xyz out/hedgenet_phonon_stage22/hedgenet_phonon.pt
# There (repository root, .whl and .gpu carried along):
#   bash data/hedgenet_phonon/experiments/gpu_stage23/run_gpu.sh [TRAIN_LIMIT_S [OUTDIR [BENCH_IF_BEFORE_S]]]
# PY and DEVICE may name another interpreter / device (a dry run of this script's flow on a CPU machine).
TLIM=${1:-470}; OUT=${2:-${OUT:-/tmp}}; BENCH_BEFORE=${3:-490}
PY=${PY:-python3}; DEVICE=${DEVICE:-cuda}
T0=$(date +%s)
elapsed() { echo $(( $(date +%s) - T0 )); }
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
tar xzf .gpu/data.tgz || exit 1
R=out/experiments_gpu_stage23; mkdir -p $R
E=data/hedgenet_phonon/experiments/gpu_stage23
echo "setup $(elapsed) s"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/gpu.txt 2>&1
$PY -c "import mlepi_ase, torch, e3nn, mace, ase; print('torch', torch.__version__, 'e3nn', e3nn.__version__, 'ase', ase.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | grep -v cuequi | tee $R/versions.txt
(nvidia-smi dmon -s um -d 15 > $R/dmon.txt 2>&1 &)
for n in bs64 bs128; do
  PYTHONUNBUFFERED=1 timeout $TLIM $PY -m mlepi_ase train-phonon $E/train_config_$n.yaml --device $DEVICE --quiet \
    > $R/$n.stdout 2>&1 &
done
# the CUDA tests (fused edge product against e3nn's on the GPU; shipped weights GPU = CPU) beside the trainings
$PY -m pytest -q -p no:cacheprovider tests/models/test_phonon_cuda.py tests/models/test_edge_tensor_product.py \
  > $R/pytest_cuda.txt 2>&1; echo "pytest rc $? at $(elapsed) s"; tail -n 3 $R/pytest_cuda.txt
wait
pkill -f "nvidia-smi dmon"
echo "trainings done $(elapsed) s"
for n in bs64 bs128; do
  d=out/experiments_gpu_stage23/$n
  [ -f $d/hedgenet_phonon.pt ] || $PY -m mlepi_ase train-phonon $E/train_config_$n.yaml --export-last $d/hedgenet_phonon.pt
  grep -E "epoch|stopped|best model|test" $d/train.log | cut -c 12-170 | tail -n 14
  tar czf $OUT/$n.tgz $d $R/$n.stdout
done
tar czf $OUT/misc.tgz $R/*.txt
if [ "$(elapsed)" -lt "$BENCH_BEFORE" ]; then
  OMP_NUM_THREADS=4 timeout 75 $PY benchmarks/bench_phonon_model.py --device $DEVICE --threads 4 \
    --output $OUT/phonon_model_cost_cuda.json > $OUT/bench.txt 2>&1; echo "bench rc $? at $(elapsed) s"
fi
echo "total $(elapsed) s"
