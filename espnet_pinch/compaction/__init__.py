"""Structured pruning's shared path: unit groups, masks on them, their cost (parameters, MACs)
as functions of the widths, and physical compaction of a group. Which groups a model has is its
family adapter's knowledge (``espnet_pinch.adapters``)."""
from espnet_pinch.compaction.compact import compact_group_  # noqa: F401
from espnet_pinch.compaction.units import ColumnMask, UnitGroup, ranked_units  # noqa: F401
