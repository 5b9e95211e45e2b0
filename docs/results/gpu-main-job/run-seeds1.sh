#!/bin/bash
# the one-seed main job on one GPU (the time left of the lease after gpu_main_job.sh)
start=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
echo "install s=$(( $(date +%s)-start ))" > $OUT/env1.txt
t0=$(date +%s)
timeout 190 python3 -m pytest benchmark/ --device cuda -p no:cacheprovider --ptibench-out /tmp/s1-out \
  --ptibench-cache /tmp/s1-cache --lr-grid -n 2 -q --ptibench-baselines /tmp/none > /tmp/s1.log 2>&1
echo "seeds1 rc=$? wall_s=$(( $(date +%s)-t0 ))" >> $OUT/env1.txt
grep -v "Warning\|np.array\|^$" /tmp/s1.log | tail -40 > $OUT/seeds1.log
cp /tmp/s1-out/tradeoff.md $OUT/seeds1-tradeoff.md 2>/dev/null
