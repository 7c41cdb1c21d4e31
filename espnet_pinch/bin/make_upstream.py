"""The starting upstream of a recipe, saved as a local S3PRL checkpoint (stage 4).

- A training config whose frontend names an S3PRL hub model (``frontend_conf.upstream:
  wav2vec2`` or ``hubert_large_ll60k``): S3PRL's converted pretrained checkpoint is fetched
  (network needed once; S3PRL caches it) and copied to ``--out``.
- Otherwise a wav2vec2/HuBERT-architecture upstream with random weights is built from the YAML
  size config ``--config`` (the bundled AN4 recipe, which has no network).
Either way, later stages load ``--out`` with ``wav2vec2_local`` / ``hubert_local``. An existing
``--out`` is never overwritten: it may be a checkpoint of the user's own.

Usage: python -m espnet_pinch.bin.make_upstream --config conf/upstream/small_cpu.yaml \
           --out exp/upstream/upstream.pt [--seed 0] [--train_config conf/train_dense.yaml]
"""
import argparse
import logging
import sys
from pathlib import Path

import yaml

from espnet_pinch.upstream.build import make_upstream
from espnet_pinch.upstream.hub import fetch, is_hub_name


def hub_name_of(train_config: str) -> str | None:
    """The S3PRL hub name in a training config's frontend, or None (a local loader)."""
    with open(train_config) as f:
        cfg = yaml.safe_load(f) or {}
    name = (cfg.get("frontend_conf") or {}).get("upstream")
    return name if name and is_hub_name(name) else None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="size config YAML (arch, model_cfg, task_cfg) of a random upstream")
    p.add_argument("--out", required=True, help="checkpoint path to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    p.add_argument("--train_config", help="training config: a hub upstream in it is fetched instead")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if Path(args.out).exists():
        logging.error("--out %s exists: not overwriting it (remove it to build a new upstream; "
                      "to start from it, give it to the recipe with --upstream_ckpt)", args.out)
        return 1
    try:
        hub = hub_name_of(args.train_config) if args.train_config else None
        if hub is not None:
            fetch(hub, args.out)
        elif args.config:
            make_upstream(args.config, args.out, args.seed)
        else:
            p.error("give --config (random upstream) or a --train_config that names a hub upstream")
    except (OSError, ValueError) as e:
        logging.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
