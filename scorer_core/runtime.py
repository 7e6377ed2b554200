"""The model contract every plugin implements: ``Runtime``, and what its methods return."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from scorer_core.errors import UnsupportedOperation
from scorer_core.frame import Frame
from scorer_core.schema import Capabilities, ModelSchema, ShapleyType

__all__ = ["ContributionGroup", "Contributions", "Outputs", "Runtime"]

#: What ``Runtime.score`` returns: one array-like column per output field, each with a value per row.
Outputs = Mapping[str, Sequence[Any] | np.ndarray]


@dataclass(frozen=True)
class ContributionGroup:
    """Shapley contributions for one output: ``values[row][feature]``.

    ``output_group`` is the class name for multiclass models and ``None`` for regression and
    binomial models, as H2O's ``ContributionGroup.outputGroup``.
    """

    output_group: str | None
    values: np.ndarray


@dataclass(frozen=True)
class Contributions:
    """Shapley contributions for a batch: feature names and one group per output."""

    features: Sequence[str]
    groups: Sequence[ContributionGroup]


class Runtime(abc.ABC):
    """A model family: loads one model from a path and scores typed batches.

    Subclass it in a plugin and return the class from ``scorer_register_runtimes``. The core
    builds one instance per served model, calls ``load`` once, then calls ``score`` (and the
    optional methods) with ``Frame`` batches from up to ``SCORING_CONCURRENCY`` threads at once
    (one at a time if ``thread_safe`` is False). It sets ``scorer_core.context.request_headers``
    around every call. No method is ever called with zero rows (the core answers such requests
    itself), and ``contributions`` only with a Shapley type listed in ``capabilities``.

    ``load`` must set ``schema``; it may set ``capabilities``, ``model_id`` and ``missing_values``.
    """

    #: The runtime name operators pass to ``--runtime`` (``mlflow-scorer``, ``h2o3-mojo-scorer``).
    name: ClassVar[str]
    #: False makes the core call this runtime from one thread at a time.
    thread_safe: ClassVar[bool] = True
    #: Worker processes used when BATCH_WORKERS is unset; choose it by benchmark (bench/).
    preferred_batch_workers: ClassVar[int] = 0
    #: When several runtimes claim a path, the highest priority wins: a runtime for a special kind
    #: of a general format (Hydrogen Torch models are MLflow models) claims it over the general one.
    detection_priority: ClassVar[int] = 0

    schema: ModelSchema
    capabilities: Capabilities = Capabilities()
    #: Returned by ``/model/id`` unless ``MODEL_ID`` overrides it; the core uses the path's name
    #: when ``load`` leaves it unset.
    model_id: str | None = None
    #: Cells that mean "missing" in every column; ``None`` keeps the core's defaults
    #: (see ``scorer_core.wire.cells``).
    missing_values: frozenset[str] | None = None
    #: One row of input cells the model scores, for ``/model/sample_request``; ``None`` uses an
    #: example per type. Set it when a type's example is not a valid value (an image field).
    sample_row: tuple[str, ...] | None = None

    @classmethod
    @abc.abstractmethod
    def can_load(cls, path: Path) -> bool:
        """Override to say, cheaply and without heavy imports, whether ``path`` is this family's model.

        Used to detect the runtime when ``--runtime`` is not given. Must not raise.
        """

    @classmethod
    def check_model(cls, path: Path) -> None:
        """Override to reject, quickly and before the server starts listening, a model that cannot load.

        Called once in the server process after the runtime is chosen, before the (possibly slow)
        ``load`` runs in the background. Raise ``ConfigurationError`` naming the file and what is
        wrong with it (a malformed descriptor, a missing file). Read descriptors only: do not
        import heavy frameworks or load weights here. The default accepts every path.
        """
        return None

    @classmethod
    def preload_modules(cls, path: Path) -> Sequence[str]:
        """Override to name the modules that loading ``path`` imports (the framework, the pickle's
        classes), so that worker processes are forked from a process that imported them once
        (``SCORER_WORKER_FORKSERVER``) instead of each importing them again.

        Called in the server process, before any worker starts: read the model's files, bounded
        in time, but never load it (``mlflow-scorer`` reads its MLmodel and the globals its pickle
        names, from the opcodes). The modules are imported in a process of their own; one that
        fails to import is skipped, and one that starts a Python thread when imported makes every
        worker start afresh (forking a process with threads is unsafe). Native thread pools are
        not seen: name no library whose import starts one that does not survive a fork (OpenBLAS
        and MKL do). The default names none: a worker is then forked with scorer_core's own
        modules and this runtime's imported.
        """
        return ()

    @abc.abstractmethod
    def load(self, path: Path) -> None:
        """Override to load the model and set ``schema`` (and optionally ``capabilities``, ``model_id``).

        Import heavy frameworks here, not at module top. Raise ``ConfigurationError`` with an
        actionable message for a model that cannot be served.
        """

    @abc.abstractmethod
    def score(self, batch: Frame) -> Outputs:
        """Override to score a batch: return one column per ``schema.outputs`` field, ``batch.num_rows`` long.

        ``batch`` may hold rows of one request or of many merged requests; the result must not
        depend on which.
        """

    def score_with_intervals(self, batch: Frame) -> tuple[Outputs, Outputs]:
        """Override when ``capabilities.prediction_intervals``: outputs plus lower/upper bound columns."""
        raise UnsupportedOperation("prediction intervals are not supported by this model")

    def contributions(self, batch: Frame, shapley_type: ShapleyType) -> Contributions:
        """Override when ``capabilities.contributions`` is not empty: Shapley values per row.

        ``shapley_type`` is always one the capabilities list and the operator enabled.
        """
        raise UnsupportedOperation("Shapley contributions are not supported by this model")

    def verify_contributions(self, enabled: frozenset[ShapleyType]) -> frozenset[ShapleyType]:
        """Override to check, once after ``load``, that the Shapley types the operator enabled work.

        Called only with types that ``capabilities`` lists and the operator enabled, so a check
        that costs a model call is never made for a type nobody asked for. Return the types that
        work; the core drops the others from ``capabilities`` (log why: it is a start-up warning,
        the model is still served). The default trusts ``capabilities``.
        """
        return enabled

    def example_row(self) -> tuple[str, ...]:
        """One row of input cells this model scores: ``sample_row``, else an example per input type.

        ``/model/sample_request`` shows it, and the core scores it to name contributions for a
        request of no rows.
        """
        return self.sample_row or tuple(f.data_type.example for f in self.schema.inputs)

    def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Override to release resources (a JVM, a GPU context) at shutdown."""
