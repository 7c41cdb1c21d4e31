"""Pruning methods behind one interface (``abs_pruner.AbsPruner``).

Adding a method: write its module here and add one line to ``PRUNERS``; the ESPnet config then
selects it with ``pruner: <name>`` and ``pruner_conf: {...}``.
"""
from espnet_pinch.pruning.abs_pruner import AbsPruner
from espnet_pinch.pruning.hj import HJPruner
from espnet_pinch.pruning.nascp import NASCPPruner
from espnet_pinch.pruning.spg import SPGPruner
from espnet_pinch.pruning.spg_struct import SPGStructPruner
from espnet_pinch.pruning.ump import UMPPruner

PRUNERS = {
    "spg": SPGPruner,
    "ump": UMPPruner,
    "nascp": NASCPPruner,
    "hj": HJPruner,
    "spg_struct": SPGStructPruner,
}

__all__ = ["AbsPruner", "PRUNERS"]
