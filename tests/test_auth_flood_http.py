"""A flood of wrong passphrases from many addresses against a real server, over real sockets.

A red-team pass opened 4 connections from each of 70 loopback addresses (127.0.0.0/8 is all
loopback) and sent distinct wrong passphrases against a PBKDF2 hash of 600,000 iterations: the
per-address limit on waiting checks did not hold them, the right passphrase got 503, then a
request held past a 60 s client timeout, then a 200 after 45.8 s. What is promised instead
(docs/security.md): a passphrase that has passed once passes at once whatever the flood, every
request is answered within a few checks' time, and a client that presents the right passphrase
for the first time and honours Retry-After is in once the flood stops.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from tests.test_auth import pbkdf2_hash
from tests.test_auth_http import PASSPHRASE, SPEC

# serial: a flood with latency bounds for the good clients; other tests' load would skew them.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

SOURCES, CONNECTIONS_PER_SOURCE = 70, 4
FLOOD_SECONDS = 8.0
REQUESTS_PER_CONNECTION = 40  # and never more than FLOOD_SECONDS' worth
#: An attacker connection refused (429, 503) waits this long before its next wrong passphrase:
#: still far faster than the hashing threads can check, without spinning a shared machine.
REFUSED_PAUSE = 0.5
#: The longest any answer may take. Generous for a loaded 2-core machine, where a check of the
#: hash takes up to a second; the old 256-deep queue held requests for 30 s and more.
ANSWER_BOUND = 10.0


@dataclass
class Answer:
    status: int  # 0: no answer within the client's timeout
    headers: dict[str, str]
    seconds: float


@dataclass
class Client:
    """A keep-alive HTTP/1.1 client whose connections leave from one loopback ``source`` address."""

    port: int
    source: str
    timeout: float = ANSWER_BOUND + 5
    _streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = field(default=None, repr=False)

    async def ask(self, credential: str) -> Answer:
        started = time.monotonic()
        try:
            status, headers = await asyncio.wait_for(self._ask(credential), self.timeout)
        except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError):
            self.close()
            return Answer(0, {}, time.monotonic() - started)
        if headers.get("connection") == "close":
            self.close()
        return Answer(status, headers, time.monotonic() - started)

    async def _ask(self, credential: str) -> tuple[int, dict[str, str]]:
        if self._streams is None:
            self._streams = await asyncio.open_connection("127.0.0.1", self.port, local_addr=(self.source, 0))
        reader, writer = self._streams
        writer.write(
            f"GET /model/id HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {credential}\r\n\r\n".encode()
        )
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in head[1:] if line)
        await reader.readexactly(int(headers.get("content-length", "0")))
        return int(head[0].split()[1]), headers

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def attacker(client: Client, name: str, until: float, answers: list[Answer]) -> None:
    """Distinct wrong passphrases, one after another, until ``until`` or its count."""
    for attempt in range(REQUESTS_PER_CONNECTION):
        if time.monotonic() >= until:
            break
        answer = await client.ask(f"wrong-{name}-{attempt}")
        answers.append(answer)
        if answer.status != 401:
            await asyncio.sleep(REFUSED_PAUSE)
    client.close()


async def newcomer(client: Client, until: float) -> list[Answer]:
    """The right passphrase, never presented before, retried as Retry-After says, until a 200."""
    answers: list[Answer] = []
    while time.monotonic() < until:
        answer = await client.ask(PASSPHRASE)
        answers.append(answer)
        if answer.status == 200:
            break
        await asyncio.sleep(float(answer.headers.get("retry-after", "1")))
    client.close()
    return answers


def test_a_flood_from_many_addresses_cannot_lock_out_the_right_passphrase(probe_server):
    env = {"SCORER_PASSPHRASE_HASH": pbkdf2_hash(PASSPHRASE.encode(), iterations=600_000)}
    with probe_server(env=env, record_headers=False, **SPEC) as target:
        port = int(target.base_url.rsplit(":", 1)[1])

        async def main() -> None:
            known = Client(port, "127.0.0.1")
            first = await known.ask(PASSPHRASE)
            assert first.status == 200, first  # checked once, before the flood

            flood: list[Answer] = []
            flood_ends = time.monotonic() + FLOOD_SECONDS
            attackers = [
                asyncio.ensure_future(
                    attacker(Client(port, f"127.10.{source}.1"), f"{source}-{n}", flood_ends, flood)
                )
                for source in range(SOURCES)
                for n in range(CONNECTIONS_PER_SOURCE)
            ]
            # The flood is in once the lane for new credentials is full and refusing.
            while not any(answer.status == 503 for answer in flood) and time.monotonic() < flood_ends:
                await asyncio.sleep(0.05)
            assert any(answer.status == 503 for answer in flood), "the flood never filled the lane"

            late = asyncio.ensure_future(newcomer(Client(port, "127.0.0.2"), flood_ends + 15))
            during = []
            for _ in range(5):
                during.append(await known.ask(PASSPHRASE))
                await asyncio.sleep(0.2)
            known.close()
            await asyncio.gather(*attackers)
            tries = await late

            # A passphrase that passed once passes at once, however many wrong ones arrive.
            assert [a.status for a in during] == [200] * 5, during
            assert max(a.seconds for a in during) < 5, during
            # Every wrong passphrase was answered, and soon: checked (401) or refused at once.
            assert {a.status for a in flood} <= {401, 429, 503}, {a.status for a in flood}
            assert max(a.seconds for a in flood) < ANSWER_BOUND, max(a.seconds for a in flood)
            assert sum(a.status == 401 for a in flood) > 0
            # The right passphrase's first check: refused at once while the flood filled the lane,
            # never held, and in once it stopped.
            assert tries[-1].status == 200, tries
            assert {a.status for a in tries} <= {200, 503}, tries
            assert all("retry-after" in a.headers for a in tries if a.status == 503), tries
            assert max(a.seconds for a in tries) < ANSWER_BOUND, tries

        asyncio.run(main())
        assert target.get("/readyz").status == 200
