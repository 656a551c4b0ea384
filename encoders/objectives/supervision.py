"""What a pre-training source says about each clip, as the objectives consume it.

The pre-training stage fills the fields the objective ``needs`` (one row per kept clip,
aligned with the audio features); each objective's ``from_supervision`` turns them into
its per-clip training targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor


@dataclass
class Supervision:
    num_clips: int
    tag_targets: Tensor | None = None  # [N, K] multi-hot, columns in tag-system order
    tag_sequences: list[str] | None = None  # canonical sequences: in-system tags by rank, joined by ", "
    tag_names: list[str] | None = None  # the tag system, index -> tag
    captions: list[str] | None = None
    label_targets: Tensor | None = None  # [N, C] multi-hot over the source's own classes
    label_names: list[str] | None = None

    def require(self, field: str, objective: str) -> Any:
        value = getattr(self, field)
        if value is None:
            raise ValueError(f"objective {objective!r} needs {field}, which this source does not provide")
        if len(value) != self.num_clips:
            raise ValueError(f"{field}: {len(value)} rows for {self.num_clips} clips")
        return value
