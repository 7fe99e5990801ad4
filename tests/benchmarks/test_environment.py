"""The environment probe: /proc/cpuinfo parsing, and a record that never raises."""

import pytest

from cvnet.benchmarks.environment import cpu_model, peak_rss_mb, physical_cores, probe_environment

pytestmark = pytest.mark.device

CPUINFO = """processor\t: 0
model name\t: Test CPU @ 2.0GHz
physical id\t: 0
core id\t: 0

processor\t: 1
model name\t: Test CPU @ 2.0GHz
physical id\t: 0
core id\t: 0

processor\t: 2
model name\t: Test CPU @ 2.0GHz
physical id\t: 0
core id\t: 1
"""


def test_cpuinfo_gives_model_and_physical_cores(monkeypatch):
    monkeypatch.setattr("cvnet.core.threads.usable_cpus", lambda: 3)
    assert cpu_model(CPUINFO) == "Test CPU @ 2.0GHz"
    assert physical_cores(CPUINFO) == 2  # two hyper-threads share core 0
    assert physical_cores("Hardware\t: BCM2835\n") == 3  # no core ids: logical CPUs


def test_probe_reports_this_machine():
    env = probe_environment()
    assert env["cpu_count"] >= 1 and env["physical_cores"] >= 1
    assert env["numpy"] and env["python"]
    assert peak_rss_mb() > 0
