#!/usr/bin/env bash
# Each config copy against the config it was copied from (conf/pruner_copies.yaml), not only
# against dense_cont as stage 9 does: for every run key (target, or 0.65 with a budget) that both
# have records of on seeds 0 and 1, espnet_pinch/bin/compare_records.py pools the word errors over
# the seeds and runs stage 9's paired bootstrap of copy - source (B - A). Run in egs2/an4/asr1
# after stage 9:  local/compare_variants.sh > VARIANTS.txt
set -euo pipefail
cd "$(dirname "$0")/.."
python="env PYTHONPATH=../../..:${PYTHONPATH:-} ${PINCH_VENV:-../../../tools/venv}/bin/python"
pairs=$(${python} -c 'import yaml; print(" ".join(c["source"] + ":" + k for k, c in yaml.safe_load(open("conf/pruner_copies.yaml")).items()))')
keys="0.5 0.65 0.8 0.9 0.65_b1 0.65_b2 0.65_b4 0.65_b8"
for pair in ${pairs}; do
    a=${pair%%:*}; b=${pair##*:}
    for k in ${keys}; do
        ra="exp/records/${a}_${k}_s0.json exp/records/${a}_${k}_s1.json"
        rb="exp/records/${b}_${k}_s0.json exp/records/${b}_${k}_s1.json"
        ls ${ra} ${rb} >/dev/null 2>&1 || continue
        echo "# ${b} against ${a} at ${k}"
        ${python} -m espnet_pinch.bin.compare_records --a ${ra} --b ${rb} --test_sets test
    done
done
