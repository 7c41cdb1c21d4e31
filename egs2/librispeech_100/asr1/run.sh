#!/usr/bin/env bash
# LibriSpeech-100h recipe (the SPG and HJ-Pruning papers' ASR setup): fine-tune a pretrained
# wav2vec2-base (default), HuBERT-large or WavLM Base+ from S3PRL's hub with CTC on train-clean-100, then compress
# it in one pass with every method and compare on dev/test clean/other. Needs GPUs: see the README's
# "Running on a cluster", e.g.
#   PINCH_BACKEND=slurm ./run.sh --ngpu 4                                      # wav2vec2-base
#   PINCH_BACKEND=slurm ./run.sh --ngpu 4 --model hubert_large                 # HuBERT-large
#   PINCH_BACKEND=slurm ./run.sh --ngpu 4 --model wavlm_base_plus              # WavLM Base+
#   ./run.sh --upstream_ckpt /data/wav2vec_small.pt                            # your own checkpoint
# (--model selects conf/train_<method>_<model>.yaml and the papers' operating point of that model.)
# Drop or add methods with --methods "spg ump@0.5"; ./run.sh --help lists every option.
set -euo pipefail
cd "$(dirname "$0")"
model=wav2vec2_base   # wav2vec2_base | hubert_large | wavlm_base_plus
args=()
while [ $# -gt 0 ]; do  # --model is this script's; everything else goes to asr.sh
  if [ "$1" = --model ]; then model=$2; shift 2; else args+=("$1"); shift; fi
  [ "${args[-1]:-}" = --help ] && echo "  --model (default: $model)   wav2vec2_base | hubert_large | wavlm_base_plus (this script's option)"
done
case $model in
  wav2vec2_base) target=0.65 ;;  # SPG paper: -65 % parameters, no significant test-clean WER loss
  hubert_large) target=0.6 ;;    # SPG paper: -60 %
  wavlm_base_plus) target=0.65 ;;  # no paper's point for WavLM: wav2vec2-base's (same size)
  *) echo "run.sh: --model must be wav2vec2_base, hubert_large or wavlm_base_plus, got $model" >&2; exit 2 ;;
esac
./asr.sh \
  --asr_config "conf/train_dense_$model.yaml" --asr_tag "dense_$model" \
  --compress_config "conf/train_compress_$model.yaml" --pruner_dir "conf/pruner_$model" \
  --inference_config conf/decode.yaml \
  --methods "spg ump nascp hj_size hj_macs" --target_sparsities "$target" \
  --train_set train_clean_100 --valid_set dev_clean \
  --test_sets "dev_clean dev_other test_clean test_other" \
  --token_type bpe --nbpe 300 --speed_perturb 1.0 --collect_feats false \
  --exp_dir "exp_$model" \
  "${args[@]}"
