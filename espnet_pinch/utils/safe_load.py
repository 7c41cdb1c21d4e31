"""Load ``torch.save`` files without running code from them.

A pickle can name any importable callable, and a full unpickler calls it: a checkpoint handed in
by a user (``--upstream_ckpt``, ``frontend_conf.path_or_url``, a bundle's ``model.pth``) could run
anything. Every ``.pt`` / ``.pth`` that espnet_pinch reads goes through :func:`load_checkpoint`:
torch's weights-only unpickler, which builds tensors, storages, ``OrderedDict`` and plain Python
values (dict, list, tuple, str, numbers, bool, None) and nothing else. Files that ESPnet or S3PRL
load with the full unpickler are first passed through :func:`check_checkpoint` (a message that
names the file), and ESPnet's training and decoding and S3PRL's upstream build run inside
:func:`weights_only_loads`, which makes every ``torch.load`` in the process weights-only whatever
the caller asks for (ESPnet asks for the full unpickler for ``--init_param``, the resume file and
``--asr_model_file``): a file swapped after the check cannot run code either.

No further types are allowed for checkpoints handed in (only the run's own resume file has an
allow-list, below). S3PRL's converted checkpoints
(``s3prl/upstream/{wav2vec2,hubert}/convert.py``) hold ``task_cfg`` / ``model_cfg`` made plain by
``OmegaConf.to_container``, ``model_weight`` (a state dict) and HuBERT's ``dictionaries_symbols``
(lists of str); fairseq saves its config with ``enum_to_str=True``, and its ``ChoiceEnum``
classes are built at run time, so no enum member can be in a file. Our own files (upstreams,
sparse exports, ESPnet model state dicts) are tensors and plain values too. ESPnet's resume file
``checkpoint.pth`` is the run's own; its reporter state holds numpy float64 scalars and
``datetime.timedelta`` (the epochs' times), so resuming allows exactly numpy's scalar
reconstructor, the float64 dtype and ``timedelta`` (:data:`RESUME_GLOBALS`).
"""
from __future__ import annotations

import ast
import pickle
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch


class UnsafeCheckpointError(ValueError):
    """The file's pickle names a type or function the weights-only unpickler refuses."""


def load_checkpoint(path: str | Path, mmap: bool = False) -> Any:
    """``torch.load(path)`` on the CPU with the weights-only unpickler.

    ``mmap``: map the tensors' storage instead of reading it (cheap when only the configs are
    needed). Raises :class:`UnsafeCheckpointError` naming the file and the refused global.
    """
    try:
        return torch.load(path, map_location="cpu", mmap=mmap, weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpointError(
            f"{path}: refused by the weights-only loader ({_refused(str(e))}); a checkpoint of "
            "tensors and plain values never needs more, and a crafted file could run code that way"
        ) from None
    except (RuntimeError, EOFError) as e:  # torch's own messages do not name the file
        raise ValueError(f"{path}: not a readable torch.save file ({e})") from e


def _refused(message: str) -> str:
    """What torch's weights-only unpickler refused, from its message."""
    found = re.search(r"GLOBAL (\S+) was not an allowed global", message)
    if found:
        return f"the pickle calls the global {found.group(1)}"
    found = re.search(r"WeightsUnpickler error: ([^\n]+)", message)
    return found.group(1) if found else message.splitlines()[0]


def check_checkpoint(path: str | Path) -> None:
    """Refuse ``path`` unless it loads weights-only: a gate before handing a file to code that
    loads it with the full unpickler (ESPnet's ``--init_param`` and ``--asr_model_file`` ask for
    the full one; S3PRL follows torch's default, which an environment variable can turn
    off). Memory-mapped, so it costs little more than reading the pickle."""
    load_checkpoint(path, mmap=True)


def _resume_globals() -> list:
    """The globals in ESPnet's ``checkpoint.pth``: the reporter's float64 statistics and times."""
    import datetime

    import numpy as np
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    return [scalar, np.dtype, type(np.dtype(np.float64)), datetime.timedelta]


RESUME_GLOBALS = _resume_globals()


@contextmanager
def weights_only_loads(allow: list | tuple = ()) -> Iterator[None]:
    """Within the block, every ``torch.load`` in this process is weights-only (a caller asking for
    the full unpickler too), with the types in ``allow`` added to torch's safe globals."""
    full = torch.load

    def load(*args, weights_only=None, **kwargs):  # noqa: ARG001 (the caller's wish is overridden)
        return full(*args, weights_only=True, **kwargs)

    torch.load = load
    try:
        with torch.serialization.safe_globals(list(allow)):
            yield
    finally:
        torch.load = full


# Config strings that S3PRL passes to Python's eval() when it builds a model (wav2vec2 / HuBERT /
# WavLM ``conv_feature_layers``, wav2vec2's ``xformers_att_config``): a checkpoint's config could
# run code that way, so they must be plain arithmetic on literals.
EVALUATED_FIELDS = ("conv_feature_layers", "xformers_att_config")
_LITERAL_NODES = (ast.Expression, ast.List, ast.Tuple, ast.Dict, ast.Constant, ast.BinOp,
                  ast.UnaryOp, ast.Add, ast.Mult, ast.USub, ast.Load)


def check_evaluated_fields(model_cfg: dict, where: str) -> None:
    """Refuse a model config whose eval()'d strings are anything but literals combined with
    ``+``, ``*`` and unary ``-`` (e.g. ``"[(512,10,5)] + [(512,3,2)] * 4"``)."""
    for key in EVALUATED_FIELDS:
        text = model_cfg.get(key)
        if not isinstance(text, str):
            continue
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as e:
            raise ValueError(f"{where}: model_cfg.{key} is not an expression: {text!r}") from e
        bad = [type(n).__name__ for n in ast.walk(tree) if not isinstance(n, _LITERAL_NODES)]
        if bad:
            raise ValueError(f"{where}: model_cfg.{key} = {text!r} uses {bad[0]}; S3PRL would eval() "
                             "it, so only literals with + and * are accepted")
