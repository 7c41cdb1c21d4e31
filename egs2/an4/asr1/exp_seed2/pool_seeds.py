"""SPG at 0.65 over seeds 0 1 2: dense_cont, SPG (shared clip) and SPG (grad_clip_scope separate),
word errors pooled over the seeds, paired bootstrap (stage 9's test). Seeds 0 1 from exp/records,
seed 2 from exp_seed2/records; the separate clip from exp_clip/records. Run in egs2/an4/asr1:
PYTHONPATH=../../.. ../../../tools/venv/bin/python exp_seed2/pool_seeds.py > exp_seed2/pool_seeds.txt"""
import json, statistics as st
from espnet_pinch.scoring.significance import paired_bootstrap
from espnet_pinch.scoring.results import N_BOOT
M='exp/records/'; R=''
sets={'dense_cont':[M+'dense_cont_s0.json',M+'dense_cont_s1.json',R+'exp_seed2/records/dense_cont_s2.json'],
      'spg_all':[M+'spg_0.65_s0.json',M+'spg_0.65_s1.json',R+'exp_seed2/records/spg_0.65_s2.json'],
      'spg_separate':[R+'exp_clip/records/spg_0.65_s%d.json'%s for s in (0,1,2)]}
def pooled(paths,s):
    out={}
    for p in paths:
        for u,(e,w) in json.load(open(p))['per_utt'][s].items():
            a=out.setdefault(u,[0,0]); a[0]+=e; a[1]+=w
    return out
for k,v in sets.items():
    w=[json.load(open(p))['row']['wer']['test'] for p in v]
    print(k,'test per seed',w,'mean %.2f std %.2f'%(st.mean(w),st.stdev(w)))
for s in ('dev','test'):
    for a,b in (('dense_cont','spg_all'),('dense_cont','spg_separate'),('spg_all','spg_separate')):
        r=paired_bootstrap(pooled(sets[a],s),pooled(sets[b],s),n_boot=N_BOOT)
        print(s,a,'->',b,'delta %.2f p %.3f ci [%.2f, %.2f]'%(r['delta_wer'],r['p_value'],*r['ci95']))
