"""bin/decode: greedy CTC and ESPnet's beam search on several sets in one process."""
import types

import pytest
import soundfile
import torch
import yaml

from espnet_pinch.bin import decode
from espnet_pinch.tasks.asr import PinchASRTask
from tests.pruning.test_spg_espnet import build_args


def fake_s2t(frames: list[int], vocab: int = 8):
    """A Speech2Text stand-in whose CTC posteriors put each frame's mass on ``frames[i]``."""
    logits = torch.full((1, len(frames), vocab), -10.0)
    logits[0, torch.arange(len(frames)), torch.tensor(frames)] = 0.0
    model = types.SimpleNamespace(
        blank_id=0, sos=vocab - 1, eos=vocab - 1,
        encode=lambda x, lens: (torch.zeros(1, len(frames), 4), lens),
        ctc=types.SimpleNamespace(log_softmax=lambda enc: torch.log_softmax(logits, -1)))
    return types.SimpleNamespace(asr_model=model)


def test_greedy_merges_repeats_and_drops_blanks_and_eos():
    ids, score = decode.greedy_ctc(fake_s2t([0, 3, 3, 0, 3, 5, 5, 7, 0, 2]), torch.zeros(100))
    assert ids == [3, 3, 5, 2]  # blank separates the two 3s; the repeated 5 is one token; eos goes
    per_frame = torch.log_softmax(torch.tensor([0.0] + [-10.0] * 7), -1)[0]
    assert score == pytest.approx(10 * float(per_frame), rel=1e-3)  # float32 sums


@pytest.fixture
def tiny_exp(tiny_ckpt, tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    args = build_args(tiny_ckpt, exp, pruner=None)
    args.token_type = "char"  # the tiny token list has no sentencepiece model
    args.train_data_path_and_name_and_type = [["train.scp", "speech", "sound"]]  # WAV files, as decoded
    torch.manual_seed(0)
    model = PinchASRTask.build_model(args)
    torch.save(model.state_dict(), exp / "model.pth")
    (exp / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    sets = []
    for name, n in (("dev", 2), ("test", 3)):
        lines = []
        for i in range(n):
            wav = tmp_path / f"{name}{i}.wav"
            soundfile.write(wav, (torch.randn(8000 + 1600 * i) * 0.1).numpy(), 16000)
            lines.append(f"{name}{i} {wav}\n")
        (tmp_path / f"{name}.scp").write_text("".join(lines))
        sets += ["--set", str(tmp_path / f"{name}.scp"), str(tmp_path / f"dec_{name}")]
    return exp, model, sets


def run(tmp_path, exp, sets, conf: dict):
    cfg = tmp_path / "decode.yaml"
    cfg.write_text(yaml.safe_dump(conf))
    decode.main(["--config", str(cfg), "--asr_train_config", str(exp / "config.yaml"),
                 "--asr_model_file", str(exp / "model.pth"), *sets])


def hyps(d):
    return dict(line.rstrip("\n").split(" ", 1) for line in (d / "1best_recog/token_int").open())


def test_greedy_decodes_every_set_with_the_models_own_argmax(tiny_exp, tmp_path):
    exp, model, sets = tiny_exp
    run(tmp_path, exp, sets, {"search": "greedy"})
    model.eval()
    for name, n in (("dev", 2), ("test", 3)):
        out = tmp_path / f"dec_{name}"
        got = hyps(out)
        assert sorted(got) == [f"{name}{i}" for i in range(n)]
        assert (out / "timing.json").is_file() and (out / "1best_recog/text").is_file()
        wav = soundfile.read(tmp_path / f"{name}1.wav", dtype="float32")[0]
        x = torch.from_numpy(wav)[None]
        with torch.no_grad():
            enc, _ = model.encode(x, torch.tensor([x.size(1)]))
            frames = model.ctc.argmax(enc)[0].tolist()
        merged = [t for i, t in enumerate(frames) if i == 0 or t != frames[i - 1]]
        want = [t for t in merged if t not in (0, model.eos)]  # as ESPnet's greedy inter-CTC
        assert len(want) > 1
        assert got[f"{name}1"].split() == [str(t) for t in want]


def test_beam_search_passes_the_config_to_espnet(tiny_exp, tmp_path):
    from espnet_pinch.bin import asr_inference
    exp, _, sets = tiny_exp
    conf = {"search": "beam", "beam_size": 2, "ctc_weight": 1.0, "lm_weight": 0.0, "batch_size": 1}
    run(tmp_path, exp, sets, conf)
    asr_inference.main(["--asr_train_config", str(exp / "config.yaml"),
                        "--asr_model_file", str(exp / "model.pth"),
                        "--data_path_and_name_and_type", f"{tmp_path / 'test.scp'},speech,sound",
                        "--output_dir", str(tmp_path / "direct"), "--beam_size", "2",
                        "--ctc_weight", "1.0", "--lm_weight", "0.0", "--batch_size", "1"])
    assert hyps(tmp_path / "dec_test") == hyps(tmp_path / "direct")
    assert len(hyps(tmp_path / "dec_dev")) == 2


def test_audio_is_fed_at_the_scale_training_saw(tiny_exp, tmp_path):
    """A model trained on the stage-3 dumps (kaldi_ark: int16 values) decodes a WAV list (sound:
    [-1, 1)) exactly as it decodes the same audio from a dump; beam search, which reads the audio
    inside ESPnet, refuses the mismatch by name."""
    import kaldiio

    exp, _, sets = tiny_exp
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    cfg["train_data_path_and_name_and_type"] = [["dump/train/wav.scp", "speech", "kaldi_ark"]]
    (exp / "config.yaml").write_text(yaml.safe_dump(cfg))
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 't.ark'},{tmp_path / 'ark.scp'}") as ark:
        for line in (tmp_path / "test.scp").read_text().splitlines():
            utt, wav = line.split()
            ark(utt, (16000, soundfile.read(wav, dtype="int16")[0]))
    run(tmp_path, exp, ["--set", str(tmp_path / "test.scp"), str(tmp_path / "wav_dec"),
                        "--set", str(tmp_path / "ark.scp"), str(tmp_path / "ark_dec")], {"search": "greedy"})
    for f in ("token", "score"):
        assert (tmp_path / "wav_dec/1best_recog" / f).read_text() == (tmp_path / "ark_dec/1best_recog" / f).read_text()
    with pytest.raises(ValueError, match=r"test.scp: sound audio, but .*config.yaml trained on another scale"):
        run(tmp_path, exp, sets[3:], {"search": "beam", "beam_size": 2, "ctc_weight": 1.0, "lm_weight": 0.0})


def test_bad_config_and_missing_files_are_named(tiny_exp, tmp_path):
    exp, _, sets = tiny_exp
    with pytest.raises(ValueError, match=r"decode.yaml: search must be one of"):
        run(tmp_path, exp, sets, {"search": "viterbi"})
    with pytest.raises(FileNotFoundError, match="nope.scp"):
        run(tmp_path, exp, ["--set", str(tmp_path / "nope.scp"), str(tmp_path / "x")], {"search": "greedy"})
