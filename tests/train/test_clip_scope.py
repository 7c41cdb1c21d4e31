"""--grad_clip_scope: the gradient clip over the model's weights alone, or over everything."""
import pytest
import torch

from espnet_pinch.tasks.asr import PinchASRTask
from espnet_pinch.train.trainer import PinchTrainer, clip_scope


def grads(weight_grad, own_grad):
    w, a = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    w.grad, a.grad = torch.tensor(weight_grad), torch.tensor(own_grad)
    return w, a


def test_separate_clips_the_weights_by_their_own_norm():
    w, a = grads([3.0, 4.0], [300.0, 400.0])  # norms 5 and 500
    with clip_scope("separate", [a]):
        norm = torch.nn.utils.clip_grad_norm_([w, a], max_norm=1.0)
    assert float(norm) == pytest.approx(5.0)  # the weights' norm is what ESPnet logs
    torch.testing.assert_close(w.grad, torch.tensor([0.6, 0.8]))  # 1/5: its own norm
    torch.testing.assert_close(a.grad, torch.tensor([0.6, 0.8]))  # 1/500
    assert torch.nn.utils.clip_grad_norm_ is not None and "clip_scope" not in repr(
        torch.nn.utils.clip_grad_norm_)  # restored on exit


def test_all_is_espnets_one_norm():
    w, a = grads([3.0, 4.0], [300.0, 400.0])
    with clip_scope("all", [a]):
        norm = torch.nn.utils.clip_grad_norm_([w, a], max_norm=1.0)
    assert float(norm) == pytest.approx((5.0 ** 2 + 500.0 ** 2) ** 0.5)
    assert float(w.grad.norm()) == pytest.approx(5.0 / float(norm), rel=1e-4)  # starved


def test_a_non_finite_norm_of_the_methods_parameters_still_skips_the_step():
    w, a = grads([3.0, 4.0], [float("nan"), 1.0])
    with clip_scope("separate", [a]):
        norm = torch.nn.utils.clip_grad_norm_([w, a], max_norm=1.0)
    assert not torch.isfinite(norm)


def test_the_option_parses_and_reaches_the_trainer_options():
    parser = PinchASRTask.get_parser()
    args = parser.parse_args(["--output_dir", "x", "--grad_clip_scope", "separate"])
    assert PinchTrainer.build_options(args).grad_clip_scope == "separate"
    assert parser.parse_args(["--output_dir", "x"]).grad_clip_scope == "all"
    with pytest.raises(SystemExit):
        parser.parse_args(["--output_dir", "x", "--grad_clip_scope", "weights"])
    with pytest.raises(ValueError, match="--grad_clip_scope"):
        with clip_scope("weights", []):
            pass


def test_espnets_train_loop_clips_through_the_attribute_the_scope_replaces():
    """clip_scope swaps torch.nn.utils.clip_grad_norm_; ESPnet's loop must look it up there at
    call time (a `from torch.nn.utils import clip_grad_norm_` would bypass the scope)."""
    import inspect

    from espnet2.train.trainer import Trainer

    source = inspect.getsource(Trainer.train_one_epoch)
    assert "torch.nn.utils.clip_grad_norm_(" in source
    assert "model.parameters()" in source.split("torch.nn.utils.clip_grad_norm_(")[1][:80]
