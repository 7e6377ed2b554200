"""``ModelHost``: the model the server serves, loading in the background, then ready, or failed;
replaced, once loaded, by ``service.replacement``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from scorer_core.errors import NotReady
from scorer_core.execution.executors import Executor
from scorer_core.execution.facts import ModelFacts

__all__ = ["ModelHost"]


class ModelHost:
    """Holds the executor of the served model once ``load`` has built it, or the load error.

    Give it a ``loader`` (run by ``load``, in a background thread at start-up) or an executor
    that is already loaded.
    """

    def __init__(
        self,
        loader: Callable[[], Executor] | None = None,
        *,
        executor: Executor | None = None,
    ) -> None:
        if (loader is None) == (executor is None):
            raise ValueError("give exactly one of loader and executor")
        self._loader = loader
        self._executor = executor
        self.error: BaseException | None = None
        self.loaded = threading.Event()
        self._starting: Executor | None = None
        #: When the served model finished loading (``time.time()``), and how long its load took.
        self.loaded_at: float | None = None
        self.load_seconds: float | None = None
        if executor is not None:
            self._served(executor, 0.0)

    @property
    def executor(self) -> Executor:
        """The loaded model's executor; ``NotReady`` (503) while loading or after a failure."""
        if self._executor is None:
            if self.error is not None:
                raise NotReady(f"the model failed to load: {self.error}", retry_after=None)
            raise NotReady("the model is still loading; retry shortly")
        return self._executor

    @property
    def facts(self) -> ModelFacts:
        return self.executor.facts

    @property
    def ready(self) -> bool:
        return self._executor is not None

    def load(self) -> None:
        """Run the loader (in the calling thread); record the executor or the error."""
        assert self._loader is not None
        started = time.perf_counter()
        try:
            self._served(self._loader(), time.perf_counter() - started)
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self.loaded.set()

    def swap(self, executor: Executor, load_seconds: float) -> Executor:
        """Serve ``executor`` from now on; the one it replaces, for its caller to drain and close."""
        old = self.executor
        self._served(executor, load_seconds)
        return old

    def _served(self, executor: Executor, load_seconds: float) -> None:
        self._executor = executor
        self.loaded_at = time.time()
        self.load_seconds = load_seconds
        self.loaded.set()

    def starting(self, executor: Executor) -> None:
        """Record an executor that is still loading, so that ``close`` can stop it."""
        self._starting = executor

    async def close(self) -> None:
        executor = self._executor or self._starting
        if executor is not None:
            await executor.close()
