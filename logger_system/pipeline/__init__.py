"""The writer's pipeline: stages are plain callables over a Batch.

A stage takes a Batch and returns it (possibly changed).  A stage marks
records it removes in `batch.keep` and counts them in `batch.delta`, so that
every record drained is accounted for exactly once when the batch is released.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Delta:
    """What a batch adds to the ring's writer totals when it is released."""

    written: int = 0
    malformed: int = 0
    abandoned: int = 0
    filtered: int = 0
    sanitized: int = 0
    sanitize_dropped: int = 0
    denied: int = 0


@dataclass
class Batch:
    """Records drained from the ring, as columns.

    meta: array of record.META_DTYPE; buf: the payload bytes that meta points
    into; keep: 1 for records still to be written; out: the formatted bytes
    once a formatting stage ran; end: the ring cursor after this batch; n: the
    directory stream's number for the first record written from this batch.
    """

    meta: np.ndarray
    buf: memoryview
    end: int
    keep: np.ndarray = None  # type: ignore[assignment]
    delta: Delta = field(default_factory=Delta)
    out: bytes | None = None
    last_seq: int | None = None
    n: int = 0

    def __post_init__(self) -> None:
        if self.keep is None:
            self.keep = np.ones(len(self.meta), dtype=np.uint8)

    @property
    def kept(self) -> int:
        return int(np.count_nonzero(self.keep))  # no sum widened to int64 per call


Stage = Callable[[Batch], Batch]


def run(stages: Sequence[Stage], batch: Batch) -> Batch:
    for stage in stages:
        batch = stage(batch)
    return batch


__all__ = ["Batch", "Delta", "Stage", "run"]
