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
set -euo pipefail
cd "$(dirname "$0")"
./asr.sh \
  --upstream_config ../../../conf/upstream/small_cpu.yaml \
  --asr_config conf/train_dense.yaml \
  --inference_config conf/decode.yaml \
  --dense_model pretrained/dense_an4 \
  --methods "spg ump nascp hj_separate@0.5 hj_size@0.5 hj_macs@0.5" \
  --target_sparsities "0.5 0.65" \
  --test_sets "dev test" \
  "$@"
