"""Fusion modes: how a pool's candidate answers become one answer.

Each mode is a :class:`~fusion_modes.base.FusionMode`; the registry below maps a pool's ``mode:`` to it.
"""

from __future__ import annotations

from collections.abc import Mapping

from fusion_modes.base import FusionMode
from fusion_modes.best_of import BestOf
from fusion_modes.debate import Debate
from fusion_modes.merge import Merge

MODES: Mapping[str, FusionMode] = {mode.name: mode for mode in (BestOf(), Merge(), Debate())}

__all__ = ["MODES", "FusionMode"]
