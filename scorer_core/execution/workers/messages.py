"""The messages between the server and a worker process, both ways, as typed classes.

A worker's life: the server sends ``Load`` (what to load, and the server's own ``Settings``, so
that a policy an embedder set in code holds in the worker too); the worker answers ``Ready`` with
the model's facts, or ``Failed``. Then for each ``Score`` it sends ``Settled`` for answers known
early and a ``BatchReport`` last; ``Stop`` (or the socket closing) ends it.

Each side checks the type of what it receives, so that a message out of turn is a broken worker,
not a tuple unpacked wrongly; ``framing`` carries them.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from scorer_core.config.settings import Settings
from scorer_core.errors import ConfigurationError
from scorer_core.execution.facts import ModelFacts
from scorer_core.execution.isolation import BatchReport, Outcome
from scorer_core.execution.scoring import ScoringTask
from scorer_core.execution.workers.framing import recv_frame, send_frame

__all__ = [
    "Failed",
    "FromWorker",
    "Load",
    "Ready",
    "Score",
    "Settled",
    "Stop",
    "ToWorker",
    "UnexpectedMessage",
    "receive_from_server",
    "receive_from_worker",
    "send",
]


@dataclass(frozen=True)
class Load:
    """Server to worker, first: load ``model_path`` with ``runtime`` under ``settings``."""

    settings: Settings
    model_path: Path
    runtime: str


@dataclass(frozen=True)
class Score:
    """Server to worker: one batch, merged into one task; ``offsets`` and ``deadlines`` split it."""

    merged: ScoringTask
    offsets: list[int]
    deadlines: list[float | None]


@dataclass(frozen=True)
class Stop:
    """Server to worker: exit now (closing the socket says the same)."""


@dataclass(frozen=True)
class Ready:
    """Worker to server, after ``Load``: the model loaded; what is known about it."""

    facts: ModelFacts


@dataclass(frozen=True)
class Failed:
    """Worker to server, after ``Load``: the model did not load. A ``ConfigurationError`` is the
    operator's to fix and is raised as it is; anything else arrives as its message."""

    error: ConfigurationError | str


@dataclass(frozen=True)
class Settled:
    """Worker to server, during a batch: outcomes known before the batch ends, by task index."""

    pairs: list[tuple[int, Outcome]]


ToWorker = Load | Score | Stop
#: A batch ends with its ``BatchReport`` (from ``isolation``), sent as it is.
FromWorker = Ready | Failed | Settled | BatchReport


class UnexpectedMessage(ConnectionError):
    """The peer sent something that is no message of this protocol: the connection is unusable."""


def send(sock: socket.socket, message: ToWorker | FromWorker) -> None:
    send_frame(sock, message)


def receive_from_server(sock: socket.socket) -> ToWorker:
    message = recv_frame(sock)
    if not isinstance(message, Load | Score | Stop):
        raise UnexpectedMessage(f"a worker received {type(message).__name__}, no message for it")
    return message


def receive_from_worker(sock: socket.socket) -> FromWorker:
    message = recv_frame(sock)
    if not isinstance(message, Ready | Failed | Settled | BatchReport):
        raise UnexpectedMessage(f"the server received {type(message).__name__} from a worker")
    return message
