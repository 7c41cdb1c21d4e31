"""Build a wav2vec2/HuBERT-architecture upstream with random weights from a YAML size config and
save it as a local S3PRL checkpoint (load it with ``wav2vec2_local`` / ``hubert_local``).

Usage: python -m espnet_pinch.bin.make_upstream --config conf/upstream/small_cpu.yaml \
           --out exp/upstream/upstream.pt [--seed 0]
"""
import argparse
import logging
import sys

from espnet_pinch.upstream.build import make_upstream


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="size config YAML (arch, model_cfg, task_cfg)")
    p.add_argument("--out", required=True, help="checkpoint path to write")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        make_upstream(args.config, args.out, args.seed)
    except (OSError, ValueError) as e:
        logging.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
