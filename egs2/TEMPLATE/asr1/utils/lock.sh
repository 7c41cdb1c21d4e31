#!/usr/bin/env bash
# One run at a time per experiment dir. Source it, then: lock_dir DIR (uses the caller's log()).
# DIR/.lock holds "pid host start" of the holder; the lock itself is a flock(1) on that file, held
# by this shell and the jobs it starts, so the kernel frees it when they all end (a killed run
# leaves no lock to remove by hand). A lock file whose holder is gone is taken over with a log line.
lock_dir() {
  local dir=$1 lock=$1/.lock pid= host= start=
  mkdir -p "$dir"
  exec 9<>"$lock"
  read -r pid host start < "$lock" || true
  if ! flock -n 9; then
    echo "$0: $dir is in use by another run: pid $pid on host $host (started $start), or a job" \
      "it started; wait for it or stop it (its lock: $lock)" >&2
    exit 1
  fi
  [ -n "$pid" ] && log "taking over the stale lock $lock of pid $pid on host $host (started $start; no longer running)"
  echo "$$ $(hostname) $(date '+%FT%T')" > "$lock"
  # The file stays (removing it would let a run that opened it just before lock a dead inode);
  # emptied on exit so that the next run knows this one ended cleanly.
  trap ': > "'"$lock"'"' EXIT
}
