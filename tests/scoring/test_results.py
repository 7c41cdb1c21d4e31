import pytest

from espnet_pinch.scoring.results import espnet_training_seconds, markdown


def test_training_seconds_from_espnet_log_with_resume(tmp_path):
    line = ("[vm] 2026 (trainer:394) INFO: {e}epoch results: [train] iter_time=0.03, loss=1.0, "
            "time={t}, total_count=140, [valid] loss_ctc=70.5, cer_ctc=1.000, time={v}, total_count=4")
    log = tmp_path / "train.log"
    log.write_text("\n".join([
        line.format(e=1, t="4 minutes and 20.5 seconds", v="1.5 seconds"),
        "[vm] 2epoch:train:1-50batch: ...",  # crashed mid-epoch 2, then resumed:
        line.format(e=2, t="1 hour, 2 minutes and 3 seconds", v="2 seconds"),
        line.format(e=2, t="10 seconds", v="1 seconds"),  # a re-run epoch counts once (last)
    ]))
    assert espnet_training_seconds(log) == pytest.approx(260.5 + 1.5 + 11)


def test_no_completed_epoch_is_an_error(tmp_path):
    (tmp_path / "train.log").write_text("nothing here\n")
    with pytest.raises(ValueError, match="no completed epoch"):
        espnet_training_seconds(tmp_path / "train.log")


def test_markdown_table_has_a_row_per_model():
    rows = [{"tag": "dense", "method": "dense", "target_sparsity": 0.0, "sparsity": 0.0,
             "sparsity_model": 0.0,
             "params_total": 2_200_000, "params_nonzero": 2_200_000, "wer": {"test": 20.0},
             "cer": {"test": 9.5}, "train_seconds": 3600, "compression_seconds": None,
             "bytes_on_disk": 8_800_000, "decode_rtf": 0.05}]
    md = markdown(rows, ["test"])
    assert "| dense | dense | 0.00 | 0.000 | 0.000 | 2.20 M | 2.20 M | 20.00 | 9.50 | 3600 | - | 8.80 | 0.050 |" in md
