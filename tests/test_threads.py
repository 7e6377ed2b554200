"""The default threads per model call: the CPUs a process may use, its cgroup's quota included,
shared between the server and its worker processes."""

from __future__ import annotations

import os

import pytest

from scorer_core.execution.threads import available_cpus, default_library_threads

AFFINITY = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("cpu_max", "expected"),
    [
        ("max 100000\n", AFFINITY),
        ("50000 100000\n", 1),  # half a CPU: one thread, never zero
        ("150000 100000\n", min(AFFINITY, 2)),  # 1.5 CPUs round up
        ("100000000 100000\n", AFFINITY),  # a quota beyond the affinity: the affinity
        ("garbage", AFFINITY),
    ],
)
def test_a_cgroup_quota_bounds_the_cpus(tmp_path, cpu_max, expected):
    path = tmp_path / "cpu.max"
    path.write_text(cpu_max)
    assert available_cpus(path) == expected


def test_no_cgroup_file_means_the_affinity(tmp_path):
    assert available_cpus(tmp_path / "absent") == AFFINITY


@pytest.mark.parametrize(
    ("workers", "cpus", "expected"),
    [(0, 8, 8), (1, 8, 4), (3, 8, 2), (1, 2, 1), (4, 2, 1), (0, 1, 1)],
)
def test_the_server_process_gets_every_cpu_and_workers_a_share(workers, cpus, expected):
    assert default_library_threads(workers, cpus) == expected
