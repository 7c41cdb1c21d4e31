"""Registration of espnet_pinch classes into ESPnet's ASR task (ESPnet itself is not edited).

ESPnet's ``ClassChoices`` objects are module-level and read at argument-parse time, so adding
entries before ``ASRTask.main()`` / ``build_model_from_file`` is enough. Importing this module
registers everything; ``ASRTask`` is re-exported for the entry points.
"""
from __future__ import annotations

from espnet2.tasks import asr as _asr
from espnet2.tasks.asr import ASRTask  # noqa: F401  (re-exported)

from espnet_pinch.encoder.linear import LinearEncoder
from espnet_pinch.frontend.s3prl import PinchS3prlFrontend

FRONTENDS = {"s3prl_pinch": PinchS3prlFrontend}
ENCODERS = {"linear": LinearEncoder}


def _register(choices, classes: dict) -> None:
    for name, cls in classes.items():
        if choices.base_type is not None and not issubclass(cls, choices.base_type):
            raise TypeError(f"{cls.__name__} must subclass {choices.base_type.__name__}")
        choices.classes[name] = cls


def register() -> None:
    """Add our classes to ESPnet's ASR ClassChoices (idempotent)."""
    _register(_asr.frontend_choices, FRONTENDS)
    _register(_asr.encoder_choices, ENCODERS)


register()
