"""Hub upstreams: names resolve to S3PRL's own checkpoints, are kept as local files, and a config
that names a hub model runs on a local checkpoint of the same family (offline)."""
import inspect
from pathlib import Path

import pytest
import torch
import yaml

from espnet_pinch.bin import make_upstream
from espnet_pinch.upstream import hub
from espnet_pinch.upstream.build import checkpoint_arch

from ..conftest import TINY


@pytest.mark.parametrize("name", sorted(hub.hub_names()))
def test_urls_are_the_installed_s3prl_hub_urls(name):
    import s3prl.hub

    arch, url = hub.hub_names()[name]
    fn = getattr(s3prl.hub, name)
    source = Path(inspect.getsourcefile(fn)).read_text()
    assert url in source, f"{url} not in {inspect.getsourcefile(fn)}"
    assert f"/{arch}/" in inspect.getsourcefile(fn)


def test_local_loader_maps_hub_names_and_rejects_the_wrong_family():
    assert hub.local_loader("wav2vec2", "wav2vec2") == "wav2vec2_local"
    assert hub.local_loader("hubert_large_ll60k", "hubert") == "hubert_local"
    assert hub.local_loader("wav2vec2_local", "wav2vec2") == "wav2vec2_local"
    with pytest.raises(ValueError, match="hubert model"):
        hub.local_loader("hubert_large_ll60k", "wav2vec2")


def test_fetch_copies_s3prl_download_to_the_experiment(tiny_ckpt, tmp_path, monkeypatch):
    import s3prl.util.download as download

    seen = []
    monkeypatch.setattr(download, "_urls_to_filepaths", lambda url: seen.append(url) or str(tiny_ckpt))
    conf = tmp_path / "train.yaml"
    conf.write_text(yaml.safe_dump({"frontend_conf": {"upstream": "wav2vec2"}}))
    out = tmp_path / "exp" / "upstream.pt"
    assert make_upstream.main(["--train_config", str(conf), "--out", str(out)]) == 0
    assert seen == [hub.hub_names()["wav2vec2"][1]]
    assert out.read_bytes() == Path(tiny_ckpt).read_bytes()
    with pytest.raises(ValueError, match="not one of"):
        hub.fetch("wavlm_huge", tmp_path / "x.pt")


def test_local_config_builds_a_random_upstream(tmp_path):
    conf = tmp_path / "train.yaml"
    conf.write_text(yaml.safe_dump({"frontend_conf": {"upstream": "wav2vec2_local"}}))
    out = tmp_path / "up.pt"
    assert make_upstream.main(["--train_config", str(conf), "--config", str(TINY), "--out", str(out)]) == 0
    assert checkpoint_arch(out) == "wav2vec2"


def test_existing_out_is_never_overwritten(tiny_ckpt, tmp_path):
    out = tmp_path / "up.pt"
    out.write_bytes(Path(tiny_ckpt).read_bytes())
    assert make_upstream.main(["--config", str(TINY), "--out", str(out), "--seed", "1"]) == 1
    assert out.read_bytes() == Path(tiny_ckpt).read_bytes()


def test_frontend_loads_a_hub_named_upstream_from_a_local_file(tiny_ckpt, tiny_hubert_ckpt):
    from espnet_pinch.frontend.s3prl import PinchS3prlFrontend

    f = PinchS3prlFrontend(upstream="wav2vec2", path_or_url=str(tiny_ckpt))
    assert f.output_size() == 32  # the tiny architecture, not the downloaded wav2vec2-base (768)
    feats, lens = f(torch.randn(1, 8000), torch.tensor([8000]))
    assert feats.shape[-1] == f.output_size() and int(lens[0]) == feats.shape[1]
    hubert = tiny_hubert_ckpt
    assert PinchS3prlFrontend(upstream="hubert_large_ll60k", path_or_url=str(hubert)).upstream_name == "hubert_local"
    with pytest.raises(ValueError, match="wav2vec2 model"):
        PinchS3prlFrontend(upstream="wav2vec2", path_or_url=str(hubert))


def test_unused_pretraining_parameters_are_frozen(tiny_ckpt):
    from espnet_pinch.frontend.s3prl import PinchS3prlFrontend

    f = PinchS3prlFrontend(upstream="wav2vec2_local", path_or_url=str(tiny_ckpt), apply_mask=False)
    frozen = {n.rsplit("model.", 1)[-1] for n, p in f.named_parameters() if not p.requires_grad}
    assert "mask_emb" in frozen and any(n.startswith(("project_q", "final_proj")) for n in frozen)
    assert not any(n.startswith(("encoder.", "feature_extractor.")) for n in frozen)
    masked = PinchS3prlFrontend(upstream="wav2vec2_local", path_or_url=str(tiny_ckpt), apply_mask=True)
    assert masked.ssl_model.mask_emb.requires_grad


def test_architecture_only_rebuild_of_a_hub_named_config_stays_offline(tiny_ckpt):
    """A compact model's config keeps `upstream: wav2vec2` and has no checkpoint: it must be
    rebuilt from its size config as a local model, never by a hub download."""
    from espnet_pinch.frontend.s3prl import PinchS3prlFrontend

    f = PinchS3prlFrontend(upstream="wav2vec2", upstream_config=str(TINY))
    assert f.output_size() == 32  # the tiny architecture, not the downloaded wav2vec2-base (768)
