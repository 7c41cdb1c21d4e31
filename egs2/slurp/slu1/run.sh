#!/usr/bin/env bash
# SLURP spoken language understanding (as in the HJ-Pruning paper): wav2vec2-base from S3PRL's hub
# fine-tuned with CTC on "INTENT words with [ ENTITY_TYPE filler ] spans" (local/data.sh), then
# compressed in one pass by every method; stage 8 adds intent accuracy and SLU-F1 (local/score.sh)
# to the WER. Needs GPUs and the corpus (db.sh says where to get it), e.g.
#   PINCH_BACKEND=slurm ./run.sh --ngpu 4
# ./run.sh --help lists every option.
set -euo pipefail
cd "$(dirname "$0")"
./asr.sh \
  --asr_config conf/train_dense_wav2vec2_base.yaml --asr_tag dense_wav2vec2_base \
  --compress_config conf/train_compress_wav2vec2_base.yaml --inference_config conf/decode.yaml \
  --methods "spg ump nascp hj_separate hj_size hj_macs" --target_sparsities "0.5" \
  --train_set train --valid_set devel --test_sets "devel test" \
  --token_type bpe --nbpe 500 --speed_perturb 1.0 --collect_feats false \
  "$@"
