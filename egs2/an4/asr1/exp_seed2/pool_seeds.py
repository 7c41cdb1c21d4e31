"""SPG at 0.65 over seeds 0 1 2: dense_cont, SPG (shared clip) and SPG (grad_clip_scope separate),
word errors pooled over the seeds (stage 9's ``results.pooled``) and stage 9's paired bootstrap.
Seeds 0 1 from exp/records, seed 2 from exp_seed2/records; the separate clip from exp_clip/records.
Run in egs2/an4/asr1:
PYTHONPATH=../../.. ../../../tools/venv/bin/python exp_seed2/pool_seeds.py > exp_seed2/pool_seeds.txt"""
import json
import statistics

from espnet_pinch.scoring.results import N_BOOT, pooled
from espnet_pinch.scoring.significance import paired_bootstrap

RUNS = {"dense_cont": ["exp/records/dense_cont_s0.json", "exp/records/dense_cont_s1.json",
                       "exp_seed2/records/dense_cont_s2.json"],
        "spg_all": ["exp/records/spg_0.65_s0.json", "exp/records/spg_0.65_s1.json",
                    "exp_seed2/records/spg_0.65_s2.json"],
        "spg_separate": [f"exp_clip/records/spg_0.65_s{s}.json" for s in (0, 1, 2)]}
records = {k: [json.load(open(p)) for p in paths] for k, paths in RUNS.items()}
for k, recs in records.items():
    w = [r["row"]["wer"]["test"] for r in recs]
    print(k, "test per seed", w, "mean %.2f std %.2f" % (statistics.mean(w), statistics.stdev(w)))
for s in ("dev", "test"):
    for a, b in (("dense_cont", "spg_all"), ("dense_cont", "spg_separate"), ("spg_all", "spg_separate")):
        r = paired_bootstrap(*(pooled([rec["per_utt"][s] for rec in records[k]]) for k in (a, b)),
                             n_boot=N_BOOT)
        print(s, a, "->", b, "delta %.2f p %.3f ci [%.2f, %.2f]" % (r["delta_wer"], r["p_value"], *r["ci95"]))
