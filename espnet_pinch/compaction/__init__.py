"""Structured pruning's shared path: unit groups, masks on them, and physical compaction."""
from espnet_pinch.compaction.compact import apply_architecture_, compact_  # noqa: F401
from espnet_pinch.compaction.units import (  # noqa: F401
    ColumnMask, UnitGroup, architecture, ranked_units, unit_groups,
)
