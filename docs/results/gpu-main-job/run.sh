#!/bin/bash
# ptibench's main job on one GPU with --device cuda: a smoke run, then the default grid with
# three seeds, then (time allowing) with one seed; every figure from pytest's own summary.
set -u
start=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch,diffusers,transformers,peft,sys; print(sys.version.split()[0], torch.__version__, diffusers.__version__, transformers.__version__, peft.__version__)"
  nproc; echo "install s=$(( $(date +%s)-start ))"; } > $OUT/env.txt 2>&1
job() {  # name, timeout, pytest args...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout $limit python3 -m pytest benchmark/ --device cuda -p no:cacheprovider \
    --ptibench-out /tmp/$name-out --ptibench-cache /tmp/$name-cache "$@" > /tmp/$name.log 2>&1
  local rc=$?
  tail -60 /tmp/$name.log > $OUT/$name.log
  echo "$name rc=$rc wall_s=$(( $(date +%s)-t0 ))" | tee -a $OUT/env.txt
  nvidia-smi --query-gpu=memory.used --format=csv >> $OUT/env.txt 2>&1
  return $rc
}
job smoke 150 --lr-grid quick --steps 30 --samples-per-prompt 2 -n 2 -q --ptibench-baselines /tmp/none || exit 2
job seeds3 400 --lr-grid --seeds 3 -n 3 -q --ptibench-baselines /tmp/gpu-baselines --update-baselines
cp /tmp/seeds3-out/results.json $OUT/seeds3-results.json 2>/dev/null
cp /tmp/seeds3-out/tradeoff.md $OUT/seeds3-tradeoff.md 2>/dev/null
left=$(( 560 - ($(date +%s)-start) ))
if [ $left -gt 150 ]; then
  job seeds1 $left --lr-grid -n 2 -q --ptibench-baselines /tmp/gpu-baselines
fi
echo "total s=$(( $(date +%s)-start ))" >> $OUT/env.txt
