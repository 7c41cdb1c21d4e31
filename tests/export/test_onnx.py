"""ONNX export (espnet_pinch/export/onnx.py, bin/export.py) and the ONNX Runtime entry point
(export/transcribe.py) on tiny random models of every family."""
import json
import os
import subprocess
import sys
import wave

import kaldiio
import numpy as np
import pytest
import torch
import yaml

from espnet_pinch.bin import decode
from espnet_pinch.bin.export import main as export_main
from espnet_pinch.export.onnx import CtcGraph, ExportError, ort_session, to_onnx
from espnet_pinch.export.transcribe import InputError, Transcriber, read_scp
from espnet_pinch.tasks.asr import PinchASRTask
from tests.pruning.test_spg_espnet import build_args

LENGTHS = (5000, 12345, 16000 * 2 + 17)  # none a multiple of the 320-sample hop


def tiny_asr(ckpt, tmp_path, upstream: str, multilayer: bool):
    args = build_args(ckpt, tmp_path, pruner=None, upstream=upstream)
    args.frontend_conf["multilayer_feature"] = multilayer
    args.token_type = "char"
    torch.manual_seed(0)
    model = PinchASRTask.build_model(args).eval()
    if multilayer:  # non-uniform layer weights, so the weighted sum is tested
        with torch.no_grad():
            model.frontend.featurizer.weights.normal_()
    return args, model


@torch.no_grad()
def decode_path(model, x):
    """PyTorch's greedy decode path (bin/decode.py): encode, then CTC log-softmax."""
    enc, _ = model.encode(x, torch.tensor([x.shape[1]]))
    return model.ctc.log_softmax(enc)


CKPTS = [("tiny_ckpt", "wav2vec2_local"), ("tiny_hubert_ckpt", "hubert_local"),
         ("tiny_wavlm_ckpt", "wavlm_local")]


@pytest.mark.parametrize("fixture, upstream", CKPTS)
@pytest.mark.parametrize("multilayer", [False, True])
def test_the_ctc_graph_is_the_decode_path_and_onnx_follows_the_length(fixture, upstream, multilayer,
                                                                      tmp_path, request):
    _, model = tiny_asr(request.getfixturevalue(fixture), tmp_path, upstream, multilayer)
    graph = CtcGraph(model).eval()
    gen = torch.Generator().manual_seed(1)
    xs = [0.1 * torch.randn(1, n, generator=gen) for n in LENGTHS]
    with torch.no_grad():
        for x in xs:  # the tensor-only forward equals S3PRL's padded, hooked one
            torch.testing.assert_close(graph(x), decode_path(model, x), atol=1e-5, rtol=0)
    path = tmp_path / "m.onnx"
    to_onnx(graph, path)
    sess = ort_session(path)
    for x in xs:  # traced on one second: every other length must still come out right
        got = sess.run(None, {"speech": x.numpy()})[0]
        assert got.shape == (1, (x.shape[1] - 1) // 320 + 1, model.ctc.ctc_lo.out_features)
        np.testing.assert_allclose(got, decode_path(model, x).numpy(), atol=1e-4, rtol=0)


def test_the_graph_standardises_the_waveform_when_the_task_says_so(tiny_ckpt, tmp_path):
    _, model = tiny_asr(tiny_ckpt, tmp_path, "wav2vec2_local", multilayer=False)
    model.frontend.upstream.upstream.wav_normalize = True  # wav2vec2 large's task config
    graph = CtcGraph(model).eval()
    assert graph.wav_normalize
    # quiet audio: the conv stack's group norm would hide a rescaling of loud audio, not of this
    x = 1e-3 * torch.randn(1, 9000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(graph(x), decode_path(model, x), atol=1e-5, rtol=0)
        graph.wav_normalize = False  # the same graph without it differs: the flag is used
        assert (graph(x) - decode_path(model, x)).abs().max() > 1e-3


def test_a_compacted_wavlm_with_a_layer_cut_to_no_heads_exports(tiny_wavlm_ckpt, tmp_path):
    _, model = tiny_asr(tiny_wavlm_ckpt, tmp_path, "wavlm_local", multilayer=True)
    fe = model.frontend
    groups = fe.adapter.unit_groups(fe.ssl_model)
    keep = {n: list(range(1, g.num_units, 2)) for n, g in groups.items()}  # every other unit
    keep["layers.0.heads"] = []  # a layer with no attention left
    fe.compact_(keep)
    assert fe.adapter.architecture(fe.ssl_model)["attention_heads"][0] == 0
    graph = CtcGraph(model).eval()
    path = tmp_path / "c.onnx"
    to_onnx(graph, path)
    sess = ort_session(path)
    for n in LENGTHS:
        x = 0.1 * torch.randn(1, n)
        np.testing.assert_allclose(sess.run(None, {"speech": x.numpy()})[0], decode_path(model, x).numpy(),
                                   atol=1e-4, rtol=0)


def test_a_model_without_the_s3prl_frontend_is_refused_by_name(tiny_ckpt, tmp_path):
    _, model = tiny_asr(tiny_ckpt, tmp_path, "wav2vec2_local", multilayer=False)
    model.frontend = torch.nn.Identity()
    with pytest.raises(ExportError, match="exp/x/model.pth: the frontend is Identity"):
        CtcGraph(model, source="exp/x/model.pth")


def write_wav(path, samples, rate=16000, channels=1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 0.999) * 32768).astype("<i2").tobytes())


@pytest.fixture
def exported(tiny_ckpt, tmp_path):
    """A tiny model saved as a training run leaves it, exported with int8, plus a wav.scp of WAV
    files and one of Kaldi archive offsets (as stage 3 dumps) with their references."""
    args, model = tiny_asr(tiny_ckpt, tmp_path, "wav2vec2_local", multilayer=True)
    exp = tmp_path / "exp"
    exp.mkdir()
    torch.save(model.state_dict(), exp / "model.pth")
    (exp / "config.yaml").write_text(yaml.safe_dump(vars(args)))
    rng = np.random.default_rng(0)
    wavs, texts = [], []
    with kaldiio.WriteHelper(f"ark,scp:{tmp_path / 'a.ark'},{tmp_path / 'ark.scp'}") as ark:
        for i, n in enumerate((8000, 11111, 20000)):
            x = 0.2 * rng.standard_normal(n)
            write_wav(tmp_path / f"u{i}.wav", x)
            ark(f"u{i}", (16000, (np.clip(x, -1, 0.999) * 32768).astype(np.int16)))
            wavs.append(f"u{i} {tmp_path / f'u{i}.wav'}\n")
            texts.append(f"u{i} A B\n")
    (tmp_path / "wav.scp").write_text("".join(wavs))
    (tmp_path / "text").write_text("".join(texts))
    out = tmp_path / "export"
    assert export_main(["--asr_train_config", str(exp / "config.yaml"), "--asr_model_file",
                        str(exp / "model.pth"), "--out", str(out), "--int8",
                        "--set", "test", str(tmp_path / "ark.scp"), str(tmp_path / "text")]) == 0
    return exp, out, model


def test_export_writes_a_model_that_transcribes_as_the_project_decodes(exported, tmp_path):
    exp, out, model = exported
    for f in ("model.onnx", "model.int8.onnx", "tokens.txt", "transcribe.py", "README", "export.json"):
        assert (out / f).is_file(), f
    assert (out / "model.int8.onnx").stat().st_size < (out / "model.onnx").stat().st_size
    meta = ort_session(out / "model.int8.onnx", 1).get_modelmeta().custom_metadata_map
    assert meta["quantization"].endswith("weight scales per tensor")  # the faster default
    assert meta["input_scale"] == "32768.0"  # trained on kaldi_ark dumps (build_args)
    res = json.loads((out / "onnx.json").read_text())
    assert res["fp32"]["max_abs_diff_vs_torch"]["test"] <= 1e-4
    assert res["fp32"]["utts_differ_unexplained"]["test"] == 0
    # the project's PyTorch greedy decode of the same audio
    cfg = tmp_path / "decode.yaml"
    cfg.write_text(yaml.safe_dump({"search": "greedy"}))
    decode.main(["--config", str(cfg), "--asr_train_config", str(exp / "config.yaml"),
                 "--asr_model_file", str(exp / "model.pth"), "--set", str(tmp_path / "wav.scp"),
                 str(tmp_path / "dec")])
    torch_hyp = (tmp_path / "dec" / "1best_recog" / "text").read_text().splitlines()
    onnx_hyp = (out / "decode_test_fp32" / "text").read_text().splitlines()
    assert sorted(onnx_hyp) == sorted(torch_hyp) and any(len(h.split()) > 1 for h in torch_hyp)
    for kind in ("fp32", "int8"):
        assert res[kind]["wer"]["test"] >= 0 and res[kind]["rtf"]["test"] > 0
        assert res[kind]["bytes"] == (out / ("model.onnx" if kind == "fp32" else "model.int8.onnx")).stat().st_size


BLOCKER = "raise ImportError('{} is not installed here (test)')\n"


def test_transcribe_py_runs_without_torch_or_espnet(exported, tmp_path):
    _, out, model = exported
    blocked = tmp_path / "blocked"
    for mod in ("torch", "espnet", "espnet2", "espnet_pinch"):
        (blocked / mod).mkdir(parents=True)
        (blocked / mod / "__init__.py").write_text(BLOCKER.format(mod))
    env = {**os.environ, "PYTHONPATH": str(blocked)}
    cmd = [sys.executable, str(out / "transcribe.py"), "--model", str(out / "model.onnx"),
           "--tokens", str(out / "tokens.txt")]
    proof = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert "not installed here" in proof.stderr  # the blocker works
    scp = subprocess.run(cmd + ["--wav_scp", str(tmp_path / "ark.scp")], env=env, capture_output=True, text=True)
    assert scp.returncode == 0, scp.stderr
    files = subprocess.run(cmd + [str(tmp_path / f"u{i}.wav") for i in range(3)], env=env,
                           capture_output=True, text=True)
    assert files.returncode == 0, files.stderr
    want = sorted((out / "decode_test_fp32" / "text").read_text().splitlines())
    assert sorted(scp.stdout.splitlines()) == want  # the same text from the archive and from files
    assert [l.split(" ", 1)[1:] for l in files.stdout.splitlines()] == [l.split(" ", 1)[1:] for l in want]


def test_bad_input_is_refused_with_the_file_named(exported, tmp_path, capsys):
    _, out, _ = exported
    model, tokens = str(out / "model.onnx"), str(out / "tokens.txt")
    write_wav(tmp_path / "8k.wav", np.zeros(8000), rate=8000)
    write_wav(tmp_path / "stereo.wav", np.zeros(16000), channels=2)
    (tmp_path / "bad.scp").write_text(f"a {tmp_path / 'u0.wav'}\nb {tmp_path / '8k.wav'}\n")
    from espnet_pinch.export.transcribe import read_wav

    with pytest.raises(InputError, match=f"{tmp_path / '8k.wav'}: sample rate 8000 Hz"):
        read_wav(str(tmp_path / "8k.wav"), str(tmp_path / "8k.wav"))
    with pytest.raises(InputError, match="stereo.wav: 2 channels"):
        read_wav(str(tmp_path / "stereo.wav"), str(tmp_path / "stereo.wav"))
    with pytest.raises(InputError, match=r"bad.scp:2 .*8k.wav\): sample rate 8000"):
        read_scp(str(tmp_path / "bad.scp"))
    with pytest.raises(InputError, match="nothing.onnx: no such model file"):
        Transcriber(str(tmp_path / "nothing.onnx"), tokens)
    (tmp_path / "short.txt").write_text("<blank>\nA\n")
    with pytest.raises(InputError, match="model.onnx: .* output classes, but .*short.txt lists 2"):
        Transcriber(model, str(tmp_path / "short.txt"))
    other = tmp_path / "other.onnx"  # a model of another architecture: not speech -> log_probs
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.randn(1, 4),), str(other), input_names=["x"],
                      output_names=["y"], dynamo=False)
    with pytest.raises(InputError, match="other.onnx: not an espnet_pinch CTC export"):
        Transcriber(str(other), tokens)
    res = subprocess.run([sys.executable, str(out / "transcribe.py"), "--model", model, "--tokens", tokens,
                          str(tmp_path / "8k.wav")], capture_output=True, text=True)
    assert res.returncode == 2 and "8k.wav: sample rate 8000 Hz" in res.stderr
    assert export_main(["--asr_train_config", str(tmp_path / "none.yaml"), "--asr_model_file",
                        str(tmp_path / "m.pth"), "--out", str(tmp_path / "e")]) == 2
    assert f"FileNotFoundError: export: no such file: {tmp_path / 'none.yaml'}" in capsys.readouterr().err


def test_token_text_is_what_sentencepiece_decodes():
    import random

    import sentencepiece as spm

    from espnet_pinch.export.transcribe import tokens_to_text
    from tests.conftest import ROOT

    sp = spm.SentencePieceProcessor(model_file=str(ROOT / "egs2/an4/asr1/pretrained/dense_an4/spm.model"))
    vocab = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    rng = random.Random(0)
    for _ in range(300):  # greedy CTC output of a barely trained model: any sequence, <unk> included
        pieces = [rng.choice(vocab) for _ in range(rng.randint(0, 12))]
        assert tokens_to_text(pieces, "bpe") == sp.decode_pieces(pieces), pieces
    assert tokens_to_text(["A", "<space>", "B"], "char") == "A B"
