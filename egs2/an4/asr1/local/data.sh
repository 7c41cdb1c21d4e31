#!/usr/bin/env bash
# AN4 data prep: corpus (db.sh's $AN4 unless --corpus) -> data/{train,dev,test}.
# Downloads CMU's an4_sphere.tar.gz when the corpus is not there and --download true.
set -euo pipefail
corpus=         # AN4 root (holds etc/ and wav/); empty: $AN4 from db.sh
data_dir=data   # output
dev_speakers=6  # speakers held out of train as dev
max_utts=0      # debug: keep only this many utterances per split
download=true   # fetch an4_sphere.tar.gz when the corpus is missing
. utils/parse_options.sh
. ./db.sh
[ -n "$corpus" ] || corpus=$AN4
if [ ! -d "$corpus/etc" ]; then
  if [ "$download" = true ] && [ "$corpus" = downloads/an4 ]; then
    mkdir -p downloads
    echo "local/data.sh: downloading an4_sphere.tar.gz"
    wget -q -O downloads/an4_sphere.tar.gz.part http://www.speech.cs.cmu.edu/databases/an4/an4_sphere.tar.gz
    mv downloads/an4_sphere.tar.gz.part downloads/an4_sphere.tar.gz
    tar -xzf downloads/an4_sphere.tar.gz -C downloads
  else
    echo "local/data.sh: AN4 corpus not found at '$corpus' (expected etc/ and wav/ inside)" >&2
    exit 1
  fi
fi
$PINCH_PYTHON -m espnet_pinch.data.an4 --corpus "$corpus" --out "$data_dir" \
  --dev_speakers "$dev_speakers" --max_utts "$max_utts"
