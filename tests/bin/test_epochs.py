"""Search / fine-tuning split of a structured method's epochs (bin/epochs.py)."""
import pytest

from espnet_pinch.bin.epochs import main, split_epochs

NASCP = {"max_epoch": 20, "pruner": "nascp", "pruner_conf": {"finetune_epochs": 6}, "scheduler": "budgetlr"}


def test_config_split_and_overrides():
    assert split_epochs(NASCP, []) == (14, 6)
    assert split_epochs({"max_epoch": 4}, []) == (4, 0)  # no fine-tuning phase (SPG, UMP)
    assert split_epochs(NASCP, ["--max_epoch", "10"]) == (4, 6)
    assert split_epochs(NASCP, ["--max_epoch", "10", "--max_epoch=8"]) == (2, 6)  # last one wins
    assert split_epochs(NASCP, ["--max_epoch", "2", "--pruner_conf", "finetune_epochs=1"]) == (1, 1)
    # no method (dense_cont): one run over the whole budget, whatever the extra options split
    dense = {"max_epoch": 4, "scheduler": "budgetlr"}
    assert split_epochs(dense, ["--max_epoch", "2", "--pruner_conf", "finetune_epochs=1"]) == (2, 0)


def test_no_search_epoch_left_is_an_error(tmp_path, capsys):
    with pytest.raises(ValueError, match="no search epoch"):
        split_epochs(NASCP, ["--max_epoch", "6"])
    conf = tmp_path / "c.yaml"
    conf.write_text("max_epoch: 1\npruner: nascp\npruner_conf: {finetune_epochs: 1}\n")
    assert main(["--config", str(conf)]) == 1
    assert "no search epoch" in capsys.readouterr().err


def test_a_structured_method_needs_the_budget_schedule(tmp_path, capsys):
    with pytest.raises(ValueError, match="scheduler: warmuplr cannot continue"):
        split_epochs({**NASCP, "scheduler": "warmuplr"}, [])
    conf = tmp_path / "c.yaml"
    conf.write_text("max_epoch: 4\nscheduler: budgetlr\npruner: nascp\npruner_conf: {finetune_epochs: 1}\n")
    assert main(["--config", str(conf)]) == 0
    assert capsys.readouterr().out.split() == ["3", "1", "4"]


def test_a_budget_keeps_the_configs_share_of_fine_tuning():
    cfg = {"max_epoch": 4, "pruner": "nascp", "pruner_conf": {"finetune_epochs": 1}, "scheduler": "budgetlr"}
    assert [split_epochs(cfg, [], b) for b in (1, 2, 4, 8)] == [(1, 0), (2, 0), (3, 1), (6, 2)]
    assert split_epochs({"max_epoch": 4}, ["--max_epoch", "3"], 8) == (8, 0)  # SPG, UMP
    with pytest.raises(ValueError, match="budget must be >= 1"):
        split_epochs(cfg, [], 0)
