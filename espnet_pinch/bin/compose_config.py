"""A compression run's training config: the recipe's one base config plus one method's block.

Every compression run of a recipe (dense_cont and each pruning method) trains with the same base
config (``conf/train_compress*.yaml``: frontend, model, optimiser, schedule, budget, data) and
differs only in its pruning block, one small file per method (``conf/pruner/<method>.yaml``) that
holds ``pruner`` and ``pruner_conf`` and nothing else. Stage 6 writes the composed config into the
run's experiment directory (``exp/asr_<tag>/train_config.yaml``, never next to the inputs) and
trains with it; dense_cont trains with the base itself.

Usage: python -m espnet_pinch.bin.compose_config --base conf/train_compress.yaml \\
           --block conf/pruner/spg.yaml --out exp/asr_spg_0.65_s0/train_config.yaml
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from espnet_pinch.utils.atomic import atomic_file

BLOCK_KEYS = ("pruner", "pruner_conf")


def _load(path: Path, what: str) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such {what}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a {what} must be a mapping of keys, got {type(data).__name__}")
    return data


def compose(base: dict, block: dict, base_path="base", block_path="block") -> dict:
    """base + block: the block's ``pruner`` and ``pruner_conf``, in place of the base's (none)."""
    extra = [k for k in block if k not in BLOCK_KEYS]
    if extra:
        raise ValueError(f"{block_path}: key {extra[0]!r} does not belong in a pruning block "
                         f"(only {', '.join(BLOCK_KEYS)}; everything else is the base config's, "
                         f"{base_path})")
    if not block.get("pruner"):
        raise ValueError(f"{block_path}: key 'pruner' must name a method (spg, ump, ...)")
    if base.get("pruner") or base.get("pruner_conf"):
        raise ValueError(f"{base_path}: key 'pruner' must be null in a base config: the method "
                         f"comes from its block ({block_path})")
    out = {k: v for k, v in base.items() if k not in BLOCK_KEYS}
    out.update({k: block[k] for k in BLOCK_KEYS if k in block})
    return out


def compose_files(base: Path, block: Path) -> dict:
    return compose(_load(base, "base config"), _load(block, "pruning block"), base, block)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", type=Path, required=True, help="the recipe's compression config")
    p.add_argument("--block", type=Path, required=True, help="one method's pruning block")
    p.add_argument("--out", type=Path, required=True, help="the composed config to write")
    a = p.parse_args(argv)
    try:
        config = compose_files(a.base, a.block)
    except ValueError as e:
        print(f"compose_config: {e}", file=sys.stderr)
        return 2
    with atomic_file(a.out) as tmp:
        tmp.write_text(f"# composed by espnet_pinch.bin.compose_config: {a.base} + {a.block}\n"
                       + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
