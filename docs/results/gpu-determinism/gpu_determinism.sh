#!/bin/bash
# Does --deterministic make a GPU run reproduce its own GPU baselines in another process? The
# quick grid (200 steps) without it, then recorded with it, then again with it (strict) in a fresh
# process with an empty cache; the numbers compared entry by entry.
set -u
start=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
echo "install s=$(( $(date +%s)-start ))" > $OUT/env.txt
job() {  # name, timeout, pytest args...
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  timeout $limit python3 -m pytest benchmark/ --device cuda -p no:cacheprovider \
    --ptibench-out /tmp/$name-out --ptibench-cache /tmp/$name-cache "$@" > /tmp/$name.log 2>&1
  local rc=$?
  grep -v "Warning\|np.array\|^$\|warnings.warn" /tmp/$name.log | tail -30 > $OUT/$name.log
  echo "$name rc=$rc wall_s=$(( $(date +%s)-t0 )) nondeterministic-op warnings: $(grep -c 'does not have a deterministic implementation' /tmp/$name.log)" | tee -a $OUT/env.txt
  grep -o "[a-z_0-9]* does not have a deterministic implementation" /tmp/$name.log | sort | uniq -c >> $OUT/env.txt
  cp /tmp/$name-out/results.json $OUT/$name-results.json 2>/dev/null
}
Q="--lr-grid quick --steps 200 -n 2 -q"
job plain 100 $Q --ptibench-baselines /tmp/none
job det-record 125 $Q --deterministic --ptibench-baselines /tmp/db --update-baselines
job det-again 125 $Q --deterministic --ptibench-baselines /tmp/db --ptibench-strict
python3 - <<'PY' >> $OUT/env.txt 2>&1
import json
runs = {n: {c["nodeid"]: c["metrics"] for c in json.load(open(f"/tmp/{n}-out/results.json"))["cases"]} for n in ("plain", "det-record", "det-again")}
for a, b in (("det-record", "det-again"), ("plain", "det-record")):
    same = sum(runs[a][k] == runs[b][k] for k in runs[a])
    print(f"{a} vs {b}: {same} of {len(runs[a])} cases bitwise equal")
    for k in runs[a]:
        d = {m: abs(runs[a][k][m] - runs[b][k][m]) for m in runs[a][k] if runs[a][k][m] is not None and runs[b][k].get(m) is not None}
        print("  ", k.split("[")[1], "max |diff|", max(d.values()) if d else None)
PY
echo "total s=$(( $(date +%s)-start ))" >> $OUT/env.txt
