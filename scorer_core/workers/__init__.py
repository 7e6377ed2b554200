"""Worker processes: each loads its own copy of the model and scores batches sent over a Unix socket."""

from __future__ import annotations

from scorer_core.workers.pool import ModelFacts, WorkerPool, load_in_workers

__all__ = ["ModelFacts", "WorkerPool", "load_in_workers"]
