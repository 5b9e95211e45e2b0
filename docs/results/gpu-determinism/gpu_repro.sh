#!/bin/bash
# Does a GPU run reproduce its own GPU baselines in another process? The quick grid (200 steps)
# recorded, then run again in a fresh process with an empty cache against what it recorded;
# then the one-seed default grid (the README's main job with --device cuda), timed.
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
  grep -v "Warning\|np.array\|^$\|warnings.warn" /tmp/$name.log | tail -45 > $OUT/$name.log
  echo "$name rc=$rc wall_s=$(( $(date +%s)-t0 ))" | tee -a $OUT/env.txt
  cp /tmp/$name-out/results.json $OUT/$name-results.json 2>/dev/null
  return $rc
}
job record 140 --lr-grid quick --steps 200 -n 2 -q --ptibench-baselines /tmp/qb --update-baselines
job again 140 --lr-grid quick --steps 200 -n 2 -q --ptibench-baselines /tmp/qb --ptibench-strict
left=$(( 575 - ($(date +%s)-start) ))
job seeds1 $left --lr-grid -n 2 -q --ptibench-baselines /tmp/none
cp /tmp/seeds1-out/tradeoff.md $OUT/seeds1-tradeoff.md 2>/dev/null
echo "total s=$(( $(date +%s)-start ))" >> $OUT/env.txt
