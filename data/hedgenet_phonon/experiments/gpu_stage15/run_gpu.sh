#!/bin/bash
# Stage 15 and its batch-32 partner side by side on one GPU machine (2026-11-27).  The run there used a copy of
# stage 15's config that differed only in its output folder (out/experiments_gpu_stage15/bs64).
# Prepared on a machine with internet access, from the repository root (the GPU image has PyTorch, not these):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl ase==3.29.0 e3nn==0.4.4 mace-torch==0.3.16 torch-ema==0.3 vesin==0.6.2
#   tar czf .gpu/data3.tgz out/phonon_dataset_large/{train,valid,test,test_6x6}.xyz \
#       out/phonon_dataset_slides/{train,test}.xyz out/phonon_dataset_{thermal_extra,thermal_extra2}/train.xyz \
#       out/hedgenet_phonon_stage14/hedgenet_phonon.pt
# There (repository root, .whl and .gpu carried along):
#   bash data/hedgenet_phonon/experiments/gpu_stage15/run_gpu.sh 500 OUTDIR
TLIM=${1:-500}; OUT=${2:-${OUT:-/tmp}}
T0=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
tar xzf .gpu/data3.tgz
R=out/experiments_gpu_stage15; mkdir -p $R
E=data/hedgenet_phonon/experiments/gpu_stage15
echo "setup $(( $(date +%s)-T0 )) s"
nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv > $R/gpu.txt 2>&1
python3 -c "import mlepi_ase, torch, e3nn, mace, ase; print(torch.__version__, e3nn.__version__, ase.__version__, torch.cuda.is_available())" 2>&1 | grep -v cuequi | tee $R/versions.txt
(nvidia-smi dmon -s um -d 15 > $R/dmon.txt 2>&1 &)
declare -A CFG=([bs64]=data/hedgenet_phonon/train_config_stage15.yaml [bs32]=$E/train_config_bs32.yaml)
for n in bs32 bs64; do
  PYTHONUNBUFFERED=1 timeout $TLIM python3 -m mlepi_ase train-phonon ${CFG[$n]} --device cuda --quiet > $R/$n.stdout 2>&1 &
done
wait
pkill -f "nvidia-smi dmon"
echo "trainings done $(( $(date +%s)-T0 )) s"
for n in bs32 bs64; do
  d=$(python3 -c "from mlepi_ase.train.phonon import load_train_config as l; print(l('${CFG[$n]}')['output_dir'])")
  [ -f $d/hedgenet_phonon.pt ] || python3 -m mlepi_ase train-phonon ${CFG[$n]} --export-last $d/hedgenet_phonon.pt
  grep -E "epoch|stopped|best model" $d/train.log | cut -c 12-170
  tar czf $OUT/$n.tgz $d $R/$n.stdout
done
tar czf $OUT/misc.tgz $R/*.txt
echo "total $(( $(date +%s)-T0 )) s"
