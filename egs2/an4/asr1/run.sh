#!/usr/bin/env bash
# AN4 recipe: data prep, sentencepiece, dump, upstream, stats, train, decode, score, results.
# By default the dense model is the bundled one (pretrained/dense_an4, trained by this recipe's
# stage 6; see README); --retrain_dense true trains it from scratch.
set -euo pipefail
cd "$(dirname "$0")"
./asr.sh \
  --upstream_config ../../../conf/upstream/small_cpu.yaml \
  --asr_config conf/train_dense.yaml \
  --inference_config conf/decode.yaml \
  --dense_model pretrained/dense_an4 \
  --test_sets "dev test" \
  "$@"
