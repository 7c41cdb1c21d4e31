#!/usr/bin/env bash
# Shared stage script of espnet_pinch ASR recipes. A recipe's run.sh sets its defaults and calls
#   ./asr.sh --asr_config conf/train_dense.yaml "$@"
# Stages (each: guard, one log line, a .done marker; safe to re-run; --stage/--stop_stage pick):
#   1 data prep        local/data.sh -> data/<sets>                    (Kaldi-style dirs)
#   2 tokenizer        sentencepiece on data/train/text -> data/token_list/<type>/
#   3 dump audio       checked, speed-perturbed kaldiio ark/scp -> dump/<set>/
#   4 upstream         local S3PRL checkpoint -> exp/upstream/: the hub model the config names
#                      (wav2vec2, hubert_large_ll60k; fetched once) or random weights from a size
#                      config (AN4, no network); --upstream_ckpt uses a checkpoint of your own
#   5 collect stats    ESPnet collect-stats through the upstream; features written with kaldiio
#   6 train            ESPnet trainer -> exp/asr_<tag>/ (dense: the bundled model unless retrained;
#                      dense_cont: the dense model continued for the pruning runs' budget, the
#                      reference of every comparison; pruning methods: one pass from the dense
#                      model, then finalize -> final/; structured methods (NAS-CP, HJ): search,
#                      compaction -> final/, then fine-tuning of the compact model -> finetune/,
#                      continuing the same lr schedule); MACs per second of audio -> macs.json
#                      (for pruned models counted by finalize); each step has its own marker
#                      (.train/.prune/.finalize/.finetune/.macs.done): a re-run redoes only
#                      what did not finish
#   7 decode           ESPnet inference on each test set -> exp/asr_<tag>/decode_<set>/
#   8 score            jiwer WER/CER + per-utterance alignments -> decode_<set>/score.json;
#                      a recipe's local/score.sh adds task scores (SLU: intent accuracy, SLU-F1)
#   9 results          RESULTS.md and exp/results.json over every trained model; exp/records/<tag>.json
#                      per finished run (row + per-utterance errors, committed), read back for runs
#                      whose exp/asr_<tag>/ is gone (another machine or session)
#  10 export          ONNX (upstream + encoder + CTC head, dynamic time axis) of every model ->
#                      exp/asr_<tag>/export/{model.onnx,model.int8.onnx,tokens.txt,transcribe.py,README};
#                      ONNX Runtime transcribes and scores the test sets -> export/onnx.json;
#                      RESULTS.md rewritten with them
# Stages 6-8 run for the dense model, dense_cont and every method x target sparsity: the comparison
# of methods (RESULTS.md, results.json, wer_vs_sparsity.png) is stage 9. The protocol: dense_cont
# and every method get the same optimizer steps on one lr schedule (scheduler: budgetlr), the same
# data and seed, and are decoded from the same kind of checkpoint (--select).
set -euo pipefail
log() { echo "$(date '+%F %T') (${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}) $*"; }

stage=1                 # first stage to run
stop_stage=10           # last stage to run
ngpu=0                  # GPUs for training (ESPnet's --ngpu; >1: DistributedDataParallel, one
                        # process per GPU; decoding uses at most 1)
nthreads=2              # torch/OpenMP threads per process (set deliberately: spin-waits otherwise)
python=python3          # interpreter (path.sh points it at tools/venv)
corpus=                 # corpus root handed to local/data.sh
local_data_opts=        # more options for local/data.sh, e.g. "--max_utts 40"
data_dir=data           # Kaldi-style data dirs
dump_dir=dump           # dumped audio
exp_dir=exp             # experiments
train_set=train         # training set name
valid_set=dev           # validation set name
test_sets="dev test"    # sets to decode and score
speed_perturb="0.9 1.0 1.1"  # speed perturbation factors for the training set
max_utt_seconds=30      # stage 3 warns about (keeps) utterances longer than this; 0: no limit
token_type=char         # sentencepiece model type: char | bpe | unigram
nlsyms=                 # file of symbols kept as single tokens (default: $data_dir/nlsyms.txt if
                        # data prep wrote one, e.g. SLURP's intent labels)
nbpe=100                # vocabulary size for bpe / unigram
upstream_config=../../../conf/upstream/small_cpu.yaml  # size config of the starting upstream
upstream_ckpt=          # existing local S3PRL checkpoint to start from (skips stage 4)
collect_feats=true      # stage 5 also writes the upstream's features (kaldiio); large for big corpora
upstream_seed=0         # seed of the random starting upstream
asr_config=conf/train_dense.yaml  # dense training config (frontend, model, optimiser)
asr_tag=                # dense experiment name (default: from the config file name)
asr_args=               # extra options for every trainer run, e.g. "--max_epoch 2"
methods=                # pruning methods to compare with dense (blocks <pruner_dir>/<method>.yaml),
                        # e.g. "spg ump nascp hj_size@0.5": a method@t1,t2 entry has its own targets
compress_config=conf/train_compress.yaml  # the training config of every compression run: dense_cont
                        # as it is, each method with its pruning block added (bin/compose_config.py)
pruner_dir=conf/pruner  # one pruning block per method (pruner + pruner_conf): <pruner_dir>/<method>.yaml
target_sparsities="0.5 0.65"  # target sparsities for every pruning method
sweep=false             # true: every method (method@targets too) over sweep_targets: the full curve
sweep_targets="0.3 0.4 0.5 0.6 0.65 0.7 0.8 0.9"  # the targets of --sweep true
budgets=                # compression time vs quality: total epoch budgets, e.g. "1 2 4 8": every
                        # method at budget_target and dense_cont once per budget (tags _b<epochs>)
budget_target=0.65      # the one target of the budget sweep
pruned_args=            # extra options for stage 6 (dense_cont and every method: one budget)
pruned_train_sp=false   # true: pruning runs train on the speed-perturbed set too (3x the time)
select=last             # checkpoint that dense_cont and every method are decoded (and SPG/UMP
                        # finalized) from: last (the last epoch) | best_dev (best dev CER; dev is
                        # then the selection set, and RESULTS.md reports test first)
dense_model=            # bundled dense model dir; stage 6 imports it instead of training
retrain_dense=false     # true: train the dense model from scratch even if dense_model is set
inference_config=conf/decode.yaml  # decoding options (search: greedy or beam, espnet_pinch/bin/decode.py)
export_int8=true        # stage 10 also writes model.int8.onnx (dynamic int8 quantization) and scores it
export_int8_per_channel=false  # int8 weight scales per output channel (default per tensor: faster here)
inference_model=valid.cer_ctc.best.pth  # checkpoint of the dense starting model (best dev CER)
seeds=0                 # training seeds: dense_cont and every method x target run once per seed
                        # (tags end in _s<seed>; RESULTS.md: mean and std over seeds, significance
                        # pooled over seeds); a dense model trained here uses the first
results_md=RESULTS.md   # where stage 9 writes the readable table
skip_recorded=false     # true: stages 6-8 skip a run (not the dense model) whose record
                        # <exp_dir>/records/<tag>.json exists and whose directory does not (done in
                        # an earlier session or on another machine; stage 9 reads it back; delete
                        # the record to redo it), e.g. the budget sweep's dense_cont runs
min_target_share=0.4    # stage 9 fails (after writing the table) unless every pruning run here trained
                        # at least this share of its steps at the full target (0: report only;
                        # runs kept only as records are reported, not failing: scoring/results.py)
smoke=false             # true: the recipe's smoke run (its run.sh sets the options): every stage on
                        # a small slice with the tiny upstream, in separate dirs (about 13 min on 2 cores)

readonly list_options="seeds"  # options that take a list of whole numbers (parse_options.sh checks)
. utils/parse_options.sh
. utils/lock.sh

die() { log "$*" >&2; exit 2; }
target='(0(\.[0-9]+)?|\.[0-9]+)'  # a target sparsity: a number in [0, 1)
# The options parse_options.sh cannot check by their default's kind, before any stage runs.
check_options() {
  local o t spec
  for o in target_sparsities sweep_targets; do
    for t in ${!o}; do [[ $t =~ ^$target$ ]] || die "--$o: $t is not a sparsity in [0, 1)"; done
  done
  for spec in $methods; do
    [[ $spec =~ ^[a-z_0-9]+(@$target(,$target)*)?$ ]] \
      || die "--methods: '$spec' is not method or method@t1,t2 with every t in [0, 1)"
    [ -f "$pruner_dir/${spec%%@*}.yaml" ] \
      || die "--methods: no pruning block $pruner_dir/${spec%%@*}.yaml for ${spec%%@*} (--pruner_dir)"
  done
  for t in $speed_perturb; do [[ $t =~ ^[0-9]*\.?[0-9]+$ ]] || die "--speed_perturb: $t is not a factor"; done
  [[ $token_type =~ ^(char|bpe|unigram)$ ]] || die "--token_type: $token_type is not char, bpe or unigram"
  [ -f "$asr_config" ] || die "--asr_config: no file $asr_config"
  # A given checkpoint is the user's: it must exist (or a typo would start from random weights).
  [ -z "$upstream_ckpt" ] || [ "$upstream_ckpt" = "$own_upstream" ] \
    || [ -f "$upstream_ckpt" ] || die "--upstream_ckpt: no such file: $upstream_ckpt"
  for t in $budgets; do [[ $t =~ ^[1-9][0-9]*$ ]] || die "--budgets: $t is not a whole number of epochs >= 1"; done
  [[ $budget_target =~ ^$target$ ]] || die "--budget_target: $budget_target is not a sparsity in [0, 1)"
  [[ $select =~ ^(last|best_dev)$ ]] || die "--select: $select is not last or best_dev"
  [[ $min_target_share =~ ^(0|1|0?\.[0-9]+|1\.0*)$ ]] || die "--min_target_share: $min_target_share is not a share in [0, 1]"
  [ -n "$methods" ] && [ ! -f "$compress_config" ] \
    && die "--compress_config: no file $compress_config (the config of dense_cont and every method)"
  return 0
}
own_upstream=$exp_dir/upstream/upstream.pt  # what stage 4 writes when no checkpoint is given
check_options
lock_dir "$exp_dir"
[ "$smoke" = true ] && log "Smoke run: every stage on a small slice, in $data_dir, $dump_dir, $exp_dir"
. ./path.sh   # puts tools/venv first on PATH (installing it on first use)
. ./cmd.sh    # train_cmd / decode_cmd: local or Slurm backend
[ "$python" = python3 ] && python=$PINCH_PYTHON

export OMP_NUM_THREADS=$nthreads MKL_NUM_THREADS=$nthreads
[ "$sweep" = true ] && target_sparsities=$sweep_targets
[ -z "$asr_tag" ] && asr_tag=$(basename "$asr_config" .yaml | sed 's/^train_//')
token_dir=$data_dir/token_list/$token_type
dense_exp=$exp_dir/asr_$asr_tag
# Experiments of stages 6-8: "tag method target config seed budget" (budget 0: the config's).
read -r -a seed_list <<< "$seeds"
exps=("$asr_tag dense 0 $asr_config ${seed_list[0]} 0")
for spec in $methods; do  # "method" (every target) or "method@t1,t2" (its own targets)
  m=${spec%%@*}; targets=$target_sparsities
  [ "$m" != "$spec" ] && [ "$sweep" != true ] && targets=${spec#*@} && targets=${targets//,/ }
  c=$pruner_dir/$m.yaml  # its pruning block, added to $compress_config by train_pruned
  for t in $targets; do for s in "${seed_list[@]}"; do exps+=("${m}_${t}_s$s $m $t $c $s 0"); done; done
  for b in $budgets; do for s in "${seed_list[@]}"; do
    exps+=("${m}_${budget_target}_b${b}_s$s $m $budget_target $c $s $b")
  done; done
done
if [ -n "$methods" ]; then  # the matched dense baseline: every comparison is against it
  c=$compress_config  # checked by check_options
  cont=()
  for s in "${seed_list[@]}"; do
    cont+=("dense_cont_s$s dense_cont 0 $c $s 0")
    for b in $budgets; do cont+=("dense_cont_b${b}_s$s dense_cont 0 $c $s $b"); done
  done
  exps=("${exps[0]}" "${cont[@]}" "${exps[@]:1}")
fi
case $select in
  last) sel_model=latest.pth ;;
  best_dev) sel_model=valid.cer_ctc.best.pth ;;
  *) log "--select must be last or best_dev, got '$select'"; exit 2 ;;
esac
stats_dir=$exp_dir/asr_stats_$token_type
decode_ngpu=$(( ngpu > 1 ? 1 : ngpu ))
# A given checkpoint (checked to exist by check_options) is the user's: no stage writes beside it.
[ -z "$upstream_ckpt" ] && upstream_ckpt=$own_upstream
sp_suffix=; [ "$speed_perturb" != "1.0" ] && sp_suffix=_sp
train_dump=$dump_dir/${train_set}${sp_suffix}
sets=$(printf '%s\n' $train_set $valid_set $test_sets | awk '!seen[$0]++')  # each once
sp_dump=false  # stage 3 writes the speed-perturbed training set only for a run that trains on it
[ -n "$sp_suffix" ] && { [ "$retrain_dense" = true ] || [ -z "$dense_model" ] || [ "$pruned_train_sp" = true ]; } \
  && sp_dump=true

# fail N LOG: stage N failed; the last error line of LOG says why (a re-run fails the same way
# unless that is fixed).
fail() {
  local err; err=$(grep -E '^[A-Za-z_][A-Za-z_.]*(Error|Exception|Interrupt|Exit)(:|$)' "$2" 2>/dev/null | tail -1 || true)
  log "Stage $1 failed${err:+: $err} (log: $2)"; exit 1
}

# train LOG COMMAND...: a training job ($train_cmd) with its progress on the console (every 30 s:
# epoch, step, loss, sparsity, time left) read from LOG.
train() {
  local log=$1 follower rc=0; shift
  mkdir -p "$(dirname "$log")"; touch "$log"
  $python -m espnet_pinch.train.progress --log "$log" --offset "$(wc -c < "$log")" --pid $$ &
  follower=$!
  $train_cmd --gpu "$ngpu" "$log" "$@" || rc=$?
  # it ends at the job's "exit" line in LOG; stopped after 10 s if the job died without one
  timeout 10 tail --pid "$follower" -f /dev/null || kill "$follower" 2>/dev/null || true
  wait "$follower" 2>/dev/null || true
  return $rc
}

# run_stage N NAME: true when stage N is selected and not done yet (its .done marker is absent).
run_stage() {
  local n=$1 marker=$2
  [ "$stage" -le "$n" ] && [ "$stop_stage" -ge "$n" ] || return 1
  if [ -f "$marker" ]; then log "Stage $n: already done ($marker); remove it to redo"; return 1; fi
  return 0
}

if run_stage 1 "$data_dir/.done"; then
  log "Stage 1: data prep: ${corpus:-corpus from db.sh} -> $data_dir/{$(echo $sets | tr ' ' ,)}"
  # shellcheck disable=SC2086
  local/data.sh --corpus "$corpus" --data_dir "$data_dir" $local_data_opts
  touch "$data_dir/.done"
fi

if run_stage 2 "$token_dir/.done"; then
  log "Stage 2: sentencepiece ($token_type) on $data_dir/$train_set/text -> $token_dir"
  [ -z "$nlsyms" ] && [ -f "$data_dir/nlsyms.txt" ] && nlsyms=$data_dir/nlsyms.txt
  $python -m espnet_pinch.data.tokenize --text "$data_dir/$train_set/text" --out "$token_dir" \
    --model_type "$token_type" --vocab_size "$nbpe" ${nlsyms:+--nlsyms "$nlsyms"}
  touch "$token_dir/.done"
fi

if run_stage 3 "$dump_dir/.done"; then
  log "Stage 3: dump audio to kaldiio ark: $data_dir -> $dump_dir$( [ "$sp_dump" = true ] \
      && echo ", and $train_set speed-perturbed ($speed_perturb) -> $train_dump")"
  # The unperturbed sets (training set included: stage 5 takes its stats from it).
  for dset in $sets; do
    $python -m espnet_pinch.data.dump --data "$data_dir/$dset" --out "$dump_dir/$dset" --max_seconds "$max_utt_seconds"
  done
  if [ "$sp_dump" = true ]; then
    # shellcheck disable=SC2086
    $python -m espnet_pinch.data.dump --data "$data_dir/$train_set" --out "$train_dump" --speed $speed_perturb \
      --max_seconds "$max_utt_seconds"
  fi
  touch "$dump_dir/.done"
fi

if [ "$upstream_ckpt" != "$own_upstream" ]; then
  if [ "$stage" -le 4 ] && [ "$stop_stage" -ge 4 ]; then
    log "Stage 4: using the given upstream checkpoint $upstream_ckpt (read only; no marker beside it)"
  fi
elif run_stage 4 "$own_upstream.done"; then
  log "Stage 4: the upstream $asr_config names (a hub model), else random weights from $upstream_config -> $own_upstream"
  $python -m espnet_pinch.bin.make_upstream --train_config "$asr_config" \
    --config "$upstream_config" --out "$own_upstream" --seed "$upstream_seed"
  touch "$own_upstream.done"
fi

# ESPnet's data options, shared by collect-stats and training.
data_opts=(
  --use_preprocessor true --token_type bpe --bpemodel "$token_dir/spm.model"
  --token_list "$token_dir/tokens.txt"
  --valid_data_path_and_name_and_type "$dump_dir/$valid_set/wav.scp,speech,kaldi_ark"
  --valid_data_path_and_name_and_type "$dump_dir/$valid_set/text,text,text"
  --valid_shape_file "$dump_dir/$valid_set/utt2num_samples"
)
# Starting upstream (architecture; its weights are then replaced by --init_param where given).
# Not given to the fine-tuning of a compact model: its config carries its own architecture.
upstream_opts=(--frontend_conf "path_or_url=$upstream_ckpt")

if run_stage 5 "$stats_dir/.done"; then
  log "Stage 5: collect stats and upstream features (kaldiio) of $dump_dir/$train_set -> $stats_dir"
  # Stats and features of the unperturbed training set; shapes of the perturbed one come
  # from its utt2num_samples.
  rm -rf "$stats_dir"
  $train_cmd "$stats_dir/logs/stats.log" $python -m espnet_pinch.bin.asr_train \
    --collect_stats true --write_collected_feats "$collect_feats" --ngpu 0 --num_workers 0 \
    --config "$asr_config" "${data_opts[@]}" "${upstream_opts[@]}" \
    --train_data_path_and_name_and_type "$dump_dir/$train_set/wav.scp,speech,kaldi_ark" \
    --train_data_path_and_name_and_type "$dump_dir/$train_set/text,text,text" \
    --train_shape_file "$dump_dir/$train_set/utt2num_samples" \
    --output_dir "$stats_dir" \
    || fail 5 "$stats_dir/logs/stats.log"
  touch "$stats_dir/.done"
fi

train_dense() {  # tag config seed
  local asr_exp=$exp_dir/asr_$1 config=$2 seed=$3
  log "Stage 6: train dense with $config -> $asr_exp (log: $asr_exp/train.log)"
  # shellcheck disable=SC2086
  train "$asr_exp/train.log" $python -m espnet_pinch.bin.asr_train \
    --config "$config" "${data_opts[@]}" "${upstream_opts[@]}" "${dense_train_opts[@]}" \
    --seed "$seed" --output_dir "$asr_exp" $asr_args \
    || fail 6 "$asr_exp/train.log"
  $python -m espnet_pinch.scoring.results meta --exp "$asr_exp" --method dense \
    --train_log "$asr_exp/train.log" --model "$inference_model"
}

# step DIR NAME READS WRITES: true when step NAME of stage 6 in DIR is still to do (its marker
# DIR/.NAME.done is absent), logging what it reads and writes; a re-run after a failure redoes
# only the steps that did not finish (and training itself resumes from its last epoch).
step() {
  if [ -f "$1/.$2.done" ]; then log "Stage 6 [$2]: already done ($1/.$2.done)"; return 1; fi
  log "Stage 6 [$2]: reads $3; writes $4"
}

# train_pruned TAG METHOD TARGET CONFIG SEED BUDGET: one compression from the dense model on the
# budget of $compress_config, or BUDGET epochs if not 0; CONFIG is the method's pruning block,
# added to $compress_config in the run's directory (method dense_cont: CONFIG is
# $compress_config itself; no pruner, no finalize: the matched dense baseline).
# Steps, each with its marker in exp/asr_<tag>/: prune (the training run with the pruner),
# finalize (masks made permanent or units removed, MACs counted), finetune (structured methods:
# the compact model), then the row's metadata.
train_pruned() {
  local asr_exp=$exp_dir/asr_$1 method=$2 target=$3 config=$4 seed=$5 budget=$6
  local init=$dense_exp/$inference_model split search_epochs ft_epochs total_epochs
  local pruner_opts=() sched_opts=() finalize_model=$sel_model
  if [ "$method" != dense_cont ]; then
    $python -m espnet_pinch.bin.compose_config --base "$compress_config" --block "$config" \
      --out "$asr_exp/train_config.yaml" || { log "Stage 6 failed: the config of $method (above)"; exit 1; }
    log "Stage 6: $method's config: $compress_config + $config -> $asr_exp/train_config.yaml"
    config=$asr_exp/train_config.yaml
  fi
  # shellcheck disable=SC2086
  split=$($python -m espnet_pinch.bin.epochs --config "$config" \
    $( [ "$budget" != 0 ] && echo --budget "$budget") -- $asr_args $pruned_args) \
    || { log "Stage 6 failed: the epochs of $config (above)"; exit 1; }
  read -r search_epochs ft_epochs total_epochs <<< "$split"
  if [ "$method" = dense_cont ]; then
    log "Stage 6: dense_cont: continue $init with $config for the pruning runs' budget" \
        "($total_epochs epochs, no pruner) -> $asr_exp (log: $asr_exp/train.log)"
  else
    pruner_opts=(--pruner_conf "target_sparsity=$target")
    log "Stage 6: prune+finetune $method to sparsity $target from $init with $config -> $asr_exp" \
        "($search_epochs epochs$( [ "$ft_epochs" -gt 0 ] && echo " of search, then $ft_epochs of fine-tuning the compact model")) (log: $asr_exp/train.log)"
  fi
  if [ "$ft_epochs" -gt 0 ]; then
    # one lr schedule over search + fine-tuning; the compaction point is the end of the search
    sched_opts=(--scheduler_conf "budget_epochs=$total_epochs"); finalize_model=latest.pth
  fi
  local first=prune; [ "$method" = dense_cont ] && first=train  # the training run (with the pruner)
  if step "$asr_exp" $first "$config, $init" "$asr_exp/{*.pth,train.log,trace.tsv}"; then
    # shellcheck disable=SC2086
    train "$asr_exp/train.log" $python -m espnet_pinch.bin.asr_train \
      --config "$config" "${data_opts[@]}" "${upstream_opts[@]}" "${pruned_train_opts[@]}" \
      --output_dir "$asr_exp" --init_param "$init" "${pruner_opts[@]}" "${sched_opts[@]}" --seed "$seed" \
      $asr_args $pruned_args --max_epoch "$search_epochs" \
      || fail 6 "$asr_exp/train.log"
    touch "$asr_exp/.$first.done"
  fi
  if [ "$method" = dense_cont ]; then
    $python -m espnet_pinch.scoring.results meta --exp "$asr_exp" --method dense_cont \
      --train_log "$asr_exp/train.log" --trace "$asr_exp/trace.tsv" --model "$sel_model" --seed "$seed" \
      --budget_epochs "$total_epochs" $( [ "$budget" != 0 ] && echo --budget_sweep)
    return
  fi
  local start
  if step "$asr_exp" finalize "$asr_exp/$finalize_model" "$asr_exp/final/ (model, config, pruning.json, macs.json)"; then
    start=$(date +%s)
    $python -m espnet_pinch.bin.finalize --exp "$asr_exp" --model "$finalize_model" \
      --out "$asr_exp/final" >> "$asr_exp/train.log" 2>&1 \
      || fail 6 "$asr_exp/train.log"
    cp "$asr_exp/final/macs.json" "$asr_exp/macs.json"  # fine-tuning keeps the architecture
    echo $(( $(date +%s) - start )) > "$asr_exp/.finalize.done"  # its seconds, for the row
  fi
  local extra; extra=$(cat "$asr_exp/.finalize.done")
  local logs=("$asr_exp/train.log") model=final/model.sparse.pt traces=("$asr_exp/trace.tsv")
  if [ "$ft_epochs" -gt 0 ] \
      && step "$asr_exp" finetune "$asr_exp/final/{config.yaml,model.pth}" "$asr_exp/finetune/"; then
    # The schedule continues from the end of the search (no second warm-up); the optimizer
    # state is reset: the compact model's parameters are new tensors in a new ESPnet run.
    log "Stage 6: fine-tune the compact $method model ($asr_exp/final/pruned_arch.yaml) for $ft_epochs epochs," \
        "lr schedule continued from epoch $search_epochs of $total_epochs -> $asr_exp/finetune (log: $asr_exp/finetune/train.log)"
    # shellcheck disable=SC2086
    train "$asr_exp/finetune/train.log" $python -m espnet_pinch.bin.asr_train \
      --config "$asr_exp/final/config.yaml" "${data_opts[@]}" "${pruned_train_opts[@]}" \
      --output_dir "$asr_exp/finetune" --init_param "$asr_exp/final/model.pth" --seed "$seed" \
      --scheduler_conf "budget_epochs=$total_epochs" --scheduler_conf "start_epoch=$search_epochs" \
      $asr_args $pruned_args --max_epoch "$ft_epochs" \
      || fail 6 "$asr_exp/finetune/train.log"
    touch "$asr_exp/.finetune.done"
  fi
  if [ "$ft_epochs" -gt 0 ]; then
    logs+=("$asr_exp/finetune/train.log"); model=finetune/$sel_model
    traces+=("$asr_exp/finetune/trace.tsv")
  elif [ -f "$asr_exp/final/model.pth" ]; then
    model=final/model.pth  # structured, no fine-tuning
  fi
  $python -m espnet_pinch.scoring.results meta --exp "$asr_exp" --method "$method" \
    --target_sparsity "$target" --train_log "${logs[@]}" --extra_seconds "$extra" \
    --model "$model" --pruning "$asr_exp/final/pruning.json" --trace "${traces[@]}" --seed "$seed" \
    --budget_epochs "$total_epochs" $( [ "$budget" != 0 ] && echo --budget_sweep)
}

common_train_opts=(--ngpu "$ngpu" --resume true)
# One process per GPU (ESPnet spawns them); the pruning state is checked equal across them after
# every epoch (espnet_pinch/train/trainer.py).
[ "$ngpu" -gt 1 ] && common_train_opts+=(--multiprocessing_distributed true)
dense_train_opts=("${common_train_opts[@]}"
  --train_data_path_and_name_and_type "$train_dump/wav.scp,speech,kaldi_ark"
  --train_data_path_and_name_and_type "$train_dump/text,text,text"
  --train_shape_file "$train_dump/utt2num_samples"
)
pruned_dump=$dump_dir/$train_set; [ "$pruned_train_sp" = true ] && pruned_dump=$train_dump
pruned_train_opts=("${common_train_opts[@]}"
  --train_data_path_and_name_and_type "$pruned_dump/wav.scp,speech,kaldi_ark"
  --train_data_path_and_name_and_type "$pruned_dump/text,text,text"
  --train_shape_file "$pruned_dump/utt2num_samples"
)

# model_of TAG METHOD: "config model_file" that stage 7 decodes (a pruned model: its export, or
# the fine-tuned compact model).
model_of() {
  local asr_exp=$exp_dir/asr_$1
  if [ "$2" = dense ]; then echo "$asr_exp/config.yaml $asr_exp/$inference_model"
  elif [ "$2" = dense_cont ]; then echo "$asr_exp/config.yaml $asr_exp/$sel_model"
  elif [ -f "$asr_exp/finetune/config.yaml" ]; then echo "$asr_exp/finetune/config.yaml $asr_exp/finetune/$sel_model"
  elif [ -f "$asr_exp/final/model.pth" ]; then echo "$asr_exp/final/config.yaml $asr_exp/final/model.pth"
  else echo "$asr_exp/final/config.yaml $asr_exp/final/model.sparse.pt"; fi
}

for e in "${exps[@]}"; do
  read -r tag method target config seed budget <<< "$e"
  asr_exp=$exp_dir/asr_$tag
  if [ "$skip_recorded" = true ] && [ "$method" != dense ] && [ ! -d "$asr_exp" ] \
      && [ -f "$exp_dir/records/$tag.json" ] && [ "$stage" -le 8 ] && [ "$stop_stage" -ge 6 ]; then
    log "Stages 6-8: $tag: recorded in $exp_dir/records/$tag.json (an earlier run), skipped (--skip_recorded true)"
    continue
  fi

  if run_stage 6 "$asr_exp/.done"; then
    mkdir -p "$asr_exp"
    if [ "$method" != dense ]; then
      train_pruned "$tag" "$method" "$target" "$config" "$seed" "$budget"  # dense_cont too
    elif [ -n "$dense_model" ] && [ "$retrain_dense" = false ]; then
      log "Stage 6: import the bundled dense model $dense_model -> $asr_exp (--retrain_dense true trains it)"
      $python -m espnet_pinch.bin.bundle import --bundle "$dense_model" --exp "$asr_exp" \
        --token_list "$token_dir/tokens.txt" --bpemodel "$token_dir/spm.model" --name "$inference_model"
    else
      train_dense "$tag" "$config" "$seed"
    fi
    read -r model_config model_file <<< "$(model_of "$tag" "$method")"
    if { [ "$method" = dense ] || [ "$method" = dense_cont ]; } \
        && step "$asr_exp" macs "$model_file" "$asr_exp/macs.json"; then  # pruned: counted by finalize
      $python -m espnet_pinch.bin.macs --config "$model_config" --model "$model_file" \
        --out "$asr_exp/macs.json" || { log "Stage 6 failed counting MACs of $model_file"; exit 1; }
      touch "$asr_exp/.macs.done"
    fi
    touch "$asr_exp/.done"
  fi

  read -r model_config model_file <<< "$(model_of "$tag" "$method")"
  if run_stage 7 "$asr_exp/.decode.done"; then
    sets=()  # every test set in one process (one model load per set, one import in all)
    for dset in $test_sets; do
      rm -rf "$asr_exp/decode_$dset"; mkdir -p "$asr_exp/decode_$dset"
      sets+=(--set "$dump_dir/$dset/wav.scp" "$asr_exp/decode_$dset/raw")
    done
    log "Stage 7: decode $test_sets ($inference_config) with $model_file -> $asr_exp/decode_*/ (log: $asr_exp/decode.log)"
    $decode_cmd --gpu "$decode_ngpu" "$asr_exp/decode.log" $python -m espnet_pinch.bin.decode \
      --config "$inference_config" --ngpu "$decode_ngpu" \
      --asr_train_config "$model_config" --asr_model_file "$model_file" "${sets[@]}" \
      || fail 7 "$asr_exp/decode.log"
    for dset in $test_sets; do
      out=$asr_exp/decode_$dset
      $python -m espnet_pinch.scoring.results rtf --decode_dir "$out" --timing "$out/raw/timing.json" \
        --num_samples "$dump_dir/$dset/utt2num_samples"
    done
    touch "$asr_exp/.decode.done"
  fi

  if run_stage 8 "$asr_exp/.score.done"; then
    for dset in $test_sets; do
      out=$asr_exp/decode_$dset
      log "Stage 8: score $out/raw/1best_recog/text against $dump_dir/$dset/text -> $out/score.json"
      $python -m espnet_pinch.scoring.score --ref "$dump_dir/$dset/text" \
        --hyp "$out/raw/1best_recog/text" --out "$out"
      if [ -x local/score.sh ]; then  # the task's own scores (e.g. SLU: intent accuracy, SLU-F1)
        local/score.sh --ref "$dump_dir/$dset/text" --hyp "$out/raw/1best_recog/text" --out "$out"
      fi
    done
    touch "$asr_exp/.score.done"
  fi
done

report() {
  $python -m espnet_pinch.scoring.results report --exp_dir "$exp_dir" --test_sets "$test_sets" \
    --markdown "$results_md" --json "$exp_dir/results.json" --select "$select" \
    --min_target_share "$min_target_share"
}
if [ "$stage" -le 9 ] && [ "$stop_stage" -ge 9 ]; then
  log "Stage 9: results over $exp_dir/asr_*/ -> $results_md, $exp_dir/results.json"
  report || { log "Stage 9 failed: the error above"; exit 1; }
fi

if [ "$stage" -le 10 ] && [ "$stop_stage" -ge 10 ]; then
  for e in "${exps[@]}"; do
    read -r tag method _ <<< "$e"
    asr_exp=$exp_dir/asr_$tag
    [ -f "$asr_exp/.score.done" ] || { log "Stage 10: $tag not decoded yet (stages 6-8): not exported"; continue; }
    run_stage 10 "$asr_exp/.export.done" || continue
    read -r model_config model_file <<< "$(model_of "$tag" "$method")"
    sets=()
    for dset in $test_sets; do sets+=(--set "$dset" "$dump_dir/$dset/wav.scp" "$dump_dir/$dset/text"); done
    log "Stage 10: export $model_file to ONNX$( [ "$export_int8" = true ] && echo " (+ int8)") -> $asr_exp/export/;" \
        "ONNX Runtime transcribes and scores $test_sets (log: $asr_exp/export.log)"
    rm -rf "$asr_exp/export"
    $python -m espnet_pinch.bin.export --asr_train_config "$model_config" --asr_model_file "$model_file" \
      --out "$asr_exp/export" --tag "$tag" --threads "$nthreads" $( [ "$export_int8" = true ] && echo --int8) \
      $( [ "$export_int8_per_channel" = true ] && echo --int8_per_channel) \
      "${sets[@]}" > "$asr_exp/export.log" 2>&1 || fail 10 "$asr_exp/export.log"
    touch "$asr_exp/.export.done"
  done
  log "Stage 10: results with the ONNX Runtime measurements -> $results_md"
  report || { log "Stage 10 failed: the error above"; exit 1; }
fi
log "Done (stages $stage..$stop_stage)"
