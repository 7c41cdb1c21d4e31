#!/usr/bin/env bash
# AN4 recipe: data prep, sentencepiece, dump, upstream, stats, then for the dense model and for
# every pruning method x target sparsity: train, decode, score; finally the comparison of methods
# (RESULTS.md, exp/results.json, wer_vs_sparsity.png).
# Drop a method: --methods "spg ump"; add a target: --target_sparsities "0.5 0.65 0.8" (or
# "hj_size@0.5,0.8" for one method);
# the full curve: --sweep true (targets 0.3 ... 0.9); seeds: --seeds "0 1 2"; compression time
# vs quality: --budgets "1 2 4 8".
# The dense model is the bundled one (pretrained/dense_an4, trained by this recipe's stage 6;
# see the README); --retrain_dense true trains it from scratch. ./run.sh --help lists options.
# First run: ./run.sh --smoke true: every stage on 40 utterances per set with the tiny upstream
# and the debug configs (dense retrained, every method), in data_smoke/, dump_smoke/, exp_smoke/.
set -euo pipefail
cd "$(dirname "$0")"
opts=(
  --upstream_config ../../../conf/upstream/small_cpu.yaml
  --asr_config conf/train_dense.yaml
  --inference_config conf/decode.yaml
  --dense_model pretrained/dense_an4
  --methods "spg ump nascp hj_size hj_macs@0.5"  # also: hj_separate
  --target_sparsities 0.65  # SPG's claim: no significant WER increase at 65%
  --test_sets "dev test"
)
if [[ " $* " == *" --smoke true "* || " $* " == *" --smoke=true "* ]]; then
  opts+=(
    --local_data_opts "--max_utts 40" --speed_perturb 1.0
    --data_dir data_smoke --dump_dir dump_smoke --exp_dir exp_smoke --results_md exp_smoke/RESULTS.md
    --upstream_config ../../../conf/upstream/tiny_test.yaml
    --asr_config conf/train_debug.yaml --asr_tag debug --retrain_dense true
    --methods "spg ump nascp hj_macs@0.4" --target_sparsities 0.5
    --compress_config conf/train_compress_debug.yaml --pruner_dir conf/pruner_debug
    --min_target_share 0  # one epoch per method: too short for the 40%-at-target rule
  )
fi
./asr.sh "${opts[@]}" "$@"
