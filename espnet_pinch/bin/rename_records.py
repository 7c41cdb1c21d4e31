"""Rename one method's run records when a config variant changes name (e.g. a new default).

When a method's default config changes, the runs made with the old config keep their numbers
under the old config's new name (``conf/pruner/nascp.yaml`` as it was -> ``nascp_noband.yaml``),
and a variant's runs can become the default's (``nascp_band`` -> ``nascp``). This rewrites every
record in ``<exp_dir>/records`` whose row's ``method`` is ``--method``: its tag, method and model
path take the new name, its file is renamed, and ``recorded.run_as`` keeps the tag it ran under
(stage 9's table footnote shows it). Nothing is written if any new file exists already, so run the
renames of a swap in order (old default away first). Only records: rename or remove the runs'
experiment directories yourself (stage 9 prefers a directory over a record of the same tag).

Usage: python -m espnet_pinch.bin.rename_records --records exp/records --method nascp --to nascp_noband
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from espnet_pinch.utils.atomic import write_json


def rename_records(records: Path, method: str, new: str) -> list[tuple[Path, Path]]:
    """Rename every record of ``method`` to ``new``; returns (old path, new path) pairs."""
    moves = []
    for path in sorted(Path(records).glob("*.json")):
        rec = json.loads(path.read_text())
        row = rec.get("row") or {}
        if row.get("method") != method:
            continue
        tag = row["tag"]
        if not tag.startswith(method + "_"):
            raise ValueError(f"{path}: tag {tag!r} does not start with its method {method!r}")
        new_tag = new + tag[len(method):]
        row.update(tag=new_tag, method=new,
                   model_path=row["model_path"].replace(f"asr_{tag}/", f"asr_{new_tag}/"))
        recorded = rec.setdefault("recorded", {})
        recorded.setdefault("run_as", tag)
        moves.append((path, path.with_name(f"{new_tag}.json"), rec))
    clash = [str(dst) for _, dst, _ in moves if dst.exists()]
    if clash:
        raise ValueError(f"records exist already, nothing renamed: {', '.join(clash)}")
    for src, dst, rec in moves:
        write_json(dst, rec)
        src.unlink()
    return [(src, dst) for src, dst, _ in moves]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", required=True, type=Path, help="a recipe's exp/records")
    p.add_argument("--method", required=True, help="the method name the records carry now")
    p.add_argument("--to", required=True, help="its new name")
    args = p.parse_args(argv)
    try:
        moves = rename_records(args.records, args.method, args.to)
    except (ValueError, OSError, json.JSONDecodeError) as e:
        print(f"rename_records: {e}", file=sys.stderr)
        return 1
    for src, dst in moves:
        print(f"{src.name} -> {dst.name}")
    print(f"{len(moves)} record(s) of {args.method} renamed to {args.to}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
