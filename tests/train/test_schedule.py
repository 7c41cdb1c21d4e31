"""BudgetLR: one schedule over a whole compression, continued across a compact model's new run."""
import io

import pytest
import torch

from espnet_pinch.train.schedule import BudgetLR, read_probes, read_trace


def lrs(sched: BudgetLR, steps: int) -> list[float]:
    """The lr each of ``steps`` optimizer steps uses (what ESPnet's trainer does per batch)."""
    out = []
    for _ in range(steps):
        out.append(sched.optimizer.param_groups[0]["lr"])
        sched.optimizer.step()
        sched.step()
    return out


def make(lr=1e-3, **conf) -> BudgetLR:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(3))], lr=lr)
    return BudgetLR(opt, **conf)


def test_warmup_then_linear_decay_over_the_budget():
    s = make(warmup_steps=4, final_lr_scale=0.1)
    s.bind(steps_per_epoch=10, max_epoch=2)
    got = lrs(s, 20)
    assert got[:4] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert got[19] == pytest.approx(1e-4)  # the last step of the budget: final_lr_scale
    assert all(a > b for a, b in zip(got[4:], got[5:]))  # decays after the warm-up
    assert got[4] == pytest.approx(1e-3 * (1 - 0.9 * 1 / 16))


def test_fine_tuning_run_continues_the_search_schedule_without_a_second_warmup():
    whole = make(warmup_steps=5)
    whole.bind(steps_per_epoch=7, max_epoch=4)
    reference = lrs(whole, 28)
    search = make(warmup_steps=5, budget_epochs=4)
    search.bind(steps_per_epoch=7, max_epoch=3)
    finetune = make(warmup_steps=5, budget_epochs=4, start_epoch=3)  # a new ESPnet run
    finetune.bind(steps_per_epoch=7, max_epoch=1)
    assert lrs(search, 21) + lrs(finetune, 7) == pytest.approx(reference, rel=1e-12)


def test_a_fractional_warmup_is_that_share_of_each_budget():
    # 0.1 of 4 epochs x 47 steps is the 19 steps the AN4 recipe used before; 5 of 1 epoch
    steps = {}
    for epochs, fixed in ((4, 19), (1, 5), (8, 38)):
        frac, whole = make(warmup_steps=0.1), make(warmup_steps=fixed)
        for s in (frac, whole):
            s.bind(steps_per_epoch=47, max_epoch=epochs)
        steps[epochs] = frac.warmup_steps
        assert lrs(frac, 47 * epochs) == lrs(whole, 47 * epochs)
    assert steps == {4: 19, 1: 5, 8: 38}
    search = make(warmup_steps=0.25, budget_epochs=4)  # the budget, not the run, sets its length
    search.bind(steps_per_epoch=7, max_epoch=3)
    assert search.warmup_steps == 7
    unbound = make(warmup_steps=0.1)
    with pytest.raises(ValueError, match="scheduler_conf.warmup_steps is a fraction"):
        lrs(unbound, 1)


def test_trace_records_each_step_and_a_resumed_step_once(tmp_path):
    s = make(warmup_steps=2)
    stats = {"achieved": 0.25, "target": 0.5}
    s.bind(steps_per_epoch=3, max_epoch=2, trace_path=tmp_path / "trace.tsv", observe=lambda: stats)
    used = lrs(s, 4)
    state = s.state_dict()
    buf = io.BytesIO()
    torch.save(state, buf)  # what ESPnet's checkpoint holds: loads without unpickling code
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    resumed = make(warmup_steps=2)  # killed after step 3's record; the rerun redoes step 4
    resumed.load_state_dict({**state, "last_epoch": 3})
    resumed.bind(steps_per_epoch=3, max_epoch=2, trace_path=tmp_path / "trace.tsv",
                 observe=lambda: stats)
    lrs(resumed, 3)
    trace = read_trace(tmp_path / "trace.tsv")
    assert [r["step"] for r in trace] == [1, 2, 3, 4, 5, 6]
    assert [r["lr"] for r in trace[:4]] == pytest.approx(used)
    assert trace[0]["achieved"] == 0.25 and trace[0]["target"] == 0.5


@pytest.mark.parametrize("conf, key", [({"warmup_steps": -1}, "warmup_steps"),
                                       ({"warmup_steps": 2.5}, "warmup_steps"),
                                       ({"final_lr_scale": 2.0}, "final_lr_scale"),
                                       ({"budget_epochs": 2, "start_epoch": 2}, "budget_epochs")])
def test_bad_conf_names_the_key(conf, key):
    with pytest.raises(ValueError, match=f"scheduler_conf.{key}"):
        make(**conf)


def test_a_run_longer_than_its_budget_is_refused():
    s = make(budget_epochs=4, start_epoch=3)
    with pytest.raises(ValueError, match="exceeds budget_epochs"):
        s.bind(steps_per_epoch=5, max_epoch=2)


def test_probes_go_to_layers_jsonl_beside_the_trace(tmp_path):
    s = make(warmup_steps=2)
    probes = iter([{}, {"layers": {"a": {"sparsity": 0.1}}}, {}, {"layers": {"a": {"sparsity": 0.3}}}])
    s.bind(steps_per_epoch=2, max_epoch=2, trace_path=tmp_path / "trace.tsv", observe=dict,
           probe=lambda: next(probes))
    lrs(s, 4)
    got = read_probes(tmp_path / "layers.jsonl")
    assert [(p["step"], p["layers"]["a"]["sparsity"]) for p in got] == [(2, 0.1), (4, 0.3)]
    (tmp_path / "bad.jsonl").write_text('{"step": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a probe record"):
        read_probes(tmp_path / "bad.jsonl")
