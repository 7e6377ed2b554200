"""Request batching: concurrent requests merged into one model call and split back by row offset."""

from __future__ import annotations

from scorer_core.batching.batch import Batch, BatchKey, batch_key, run_batch
from scorer_core.batching.batcher import Batcher

__all__ = ["Batch", "BatchKey", "Batcher", "batch_key", "run_batch"]
