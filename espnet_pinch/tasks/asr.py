"""Registration of espnet_pinch classes into ESPnet's ASR task (ESPnet itself is not edited).

ESPnet's ``ClassChoices`` objects are module-level and read at argument-parse time, so adding
entries before ``ASRTask.main()`` / ``build_model_from_file`` is enough: importing this module
registers our frontend, encoder and model. ``PinchASRTask`` adds one more choice, ``pruner``
(``pruner: spg`` + ``pruner_conf: {...}`` in a config), and attaches it when the model is built.
"""
from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from espnet2.tasks import abs_task as _abs_task
from espnet2.tasks import asr as _asr
from espnet2.tasks.asr import ASRTask
from espnet2.train.class_choices import ClassChoices

from espnet_pinch.encoder.linear import LinearEncoder
from espnet_pinch.frontend.s3prl import PinchS3prlFrontend
from espnet_pinch.model.asr import PinchESPnetASRModel
from espnet_pinch.pruning import PRUNERS, AbsPruner
from espnet_pinch.train.optim import add_budget_scaled_group, add_plain_sgd_group
from espnet_pinch.train.schedule import BudgetLR
from espnet_pinch.train.trainer import PinchTrainer
from espnet_pinch.utils.safe_load import RESUME_GLOBALS, check_checkpoint, weights_only_loads

FRONTENDS = {"s3prl_pinch": PinchS3prlFrontend}
ENCODERS = {"linear": LinearEncoder}
MODELS = {"pinch": PinchESPnetASRModel}
SCHEDULERS = {"budgetlr": BudgetLR}  # ESPnet keeps these in a plain dict, not a ClassChoices

pruner_choices = ClassChoices(
    name="pruner", classes=PRUNERS, type_check=AbsPruner, default=None, optional=True
)


def _register(choices, classes: dict) -> None:
    for name, cls in classes.items():
        if choices.base_type is not None and not issubclass(cls, choices.base_type):
            raise TypeError(f"{cls.__name__} must subclass {choices.base_type.__name__}")
        choices.classes[name] = cls


def register() -> None:
    """Add our classes to ESPnet's ASR ClassChoices (idempotent)."""
    _register(_asr.frontend_choices, FRONTENDS)
    _register(_asr.encoder_choices, ENCODERS)
    _register(_asr.model_choices, MODELS)
    _abs_task.scheduler_classes.update(SCHEDULERS)


register()


class PinchASRTask(ASRTask):
    """ESPnet's ASR task plus the ``pruner`` choice, trained by ``PinchTrainer`` (resumable,
    rank-consistent pruning state; see ``espnet_pinch/train/trainer.py``)."""

    class_choices_list = ASRTask.class_choices_list + [pruner_choices]
    trainer = PinchTrainer

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        # ESPnet reads --init_param files with the full unpickler; refuse one that needs more.
        for spec in args.init_param or []:
            check_checkpoint(spec.split(":")[0])
        # ... and every load in training is weights-only (the resume file's numpy scalars allowed)
        with weights_only_loads(RESUME_GLOBALS):
            super().main_worker(args)

    @classmethod
    def build_model_from_file(cls, config_file: str | Path | None = None,
                              model_file: str | Path | None = None, device: str = "cpu"):
        # Likewise model_file (finalize, MACs counting).
        if model_file is not None:
            check_checkpoint(model_file)
        with weights_only_loads():
            return super().build_model_from_file(config_file, model_file, device)

    @classmethod
    def build_optimizers(cls, args: argparse.Namespace, model):
        optimizers = super().build_optimizers(args, model)
        pruner = getattr(getattr(model, "module", model), "pruner", None)
        if pruner is not None:
            add_plain_sgd_group(optimizers[0], *pruner.plain_sgd_parameters())
            if getattr(pruner, "budget_ref_steps", None) is not None:  # pruning/lagrangian.py
                add_budget_scaled_group(optimizers[0], pruner.own_parameters())
        return optimizers

    @classmethod
    def build_model(cls, args: argparse.Namespace):
        model = super().build_model(args)
        name = getattr(args, "pruner", None)
        if name is None:
            return model
        if not isinstance(model, PinchESPnetASRModel):
            raise ValueError(f"pruner: {name} needs `model: pinch` in the config")
        conf = dict(getattr(args, "pruner_conf", None) or {})
        cls_ = pruner_choices.get_class(name)
        if getattr(cls_, "needs_ssl_model", False):  # structured methods prune units of the SSL model
            conf["ssl_model"] = model.frontend.ssl_model
        elif "layers" in inspect.signature(cls_).parameters and conf.get("layers") is None:
            conf["layers"] = list(model.frontend.adapter.default_patterns)
        try:
            pruner = cls_(model.prunable_layers(), **conf)
        except TypeError as e:  # an unknown key in pruner_conf
            raise ValueError(f"pruner_conf: {e}") from e
        model.set_pruner(pruner)
        return model
