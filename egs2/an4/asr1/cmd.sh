# Job backends for asr.sh: how each heavy stage is run. Pick one block.
# local: run here (default). slurm: each stage is a blocking srun job step; set the partition and
# any extra options below; SLURM_DRY_RUN=1 prints the commands instead of submitting them.
backend=${PINCH_BACKEND:-local}
case $backend in
  local)
    train_cmd=utils/local.sh
    decode_cmd=utils/local.sh ;;
  slurm)
    export SLURM_PARTITION=${SLURM_PARTITION:-gpu}  # partition
    export SLURM_EXTRA=${SLURM_EXTRA:-}              # e.g. "--account=myproj --cpus-per-task=8"
    train_cmd="utils/slurm.sh --mem 32G --time 48:00:00"
    decode_cmd="utils/slurm.sh --mem 16G --time 4:00:00" ;;
  *) echo "cmd.sh: unknown backend $backend (local | slurm)" >&2; exit 2 ;;
esac
