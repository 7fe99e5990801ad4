"""The machine probe: /proc parsing, GPUs from the CUDA driver (nvidia-smi only as a fallback), a
Jetson seen through fake files and tools, and a record that never raises."""

import pytest

from cvnet.engines import machine
from cvnet.engines.errors import EngineError
from cvnet.engines.gpu import GpuInfo
from cvnet.engines.machine import (cpu_model, gpu_description, gpu_names, jetson_info, peak_rss_mb,
                                   physical_cores, probe_machine)

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
#: What a Jetson Nano with JetPack 4.6.1 shows, file by file (the device-tree model ends in NUL).
NANO_FILES = {
    "/etc/nv_tegra_release": "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, "
                             "EABI: aarch64, DATE: Sat Feb 19 17:05:08 UTC 2022\n",
    "/proc/device-tree/model": "NVIDIA Jetson Nano Developer Kit\x00",
    "/proc/cpuinfo": "processor\t: 0\nmodel name\t: ARMv8 Processor rev 1 (v8l)\n",
    "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": "1479000\n",
    "/sys/devices/gpu.0/devfreq/57000000.gpu/cur_freq": "921600000\n",
}
NANO_TOOLS = {"nvpmodel": "NV Fan Mode:quiet\nNV Power Mode: 5W\n1\n"}
NANO_GPU = GpuInfo(0, "NVIDIA Tegra X1", "5.3")


def _no_driver():
    raise EngineError("no CUDA driver here")


def _tools(outputs, calls=None):
    def run(argv):
        if calls is not None:
            calls.append(argv[0])
        return outputs.get(argv[0])
    return run


def test_cpuinfo_gives_model_and_physical_cores(monkeypatch):
    monkeypatch.setattr("cvnet.core.cpu.affinity", lambda: {0, 1, 2})
    no_quota = {}.get  # no cgroup files
    assert cpu_model(CPUINFO) == "Test CPU @ 2.0GHz"
    assert physical_cores(CPUINFO, read=no_quota) == 2  # two hyper-threads share core 0
    assert physical_cores("Hardware\t: BCM2835\n", read=no_quota) == 3  # no core ids: CPUs


def test_gpus_come_from_the_cuda_driver_without_nvidia_smi():
    calls = []
    assert gpu_names(lambda: [NANO_GPU], _tools({}, calls)) == ["NVIDIA Tegra X1"]
    assert calls == []  # nvidia-smi is not even tried
    assert gpu_description(lambda: [NANO_GPU]) == "NVIDIA Tegra X1 (compute capability 5.3)"


def test_nvidia_smi_is_the_fallback_when_there_is_no_driver_library():
    smi = {"nvidia-smi": "NVIDIA A100-SXM4-40GB\nNVIDIA A100-SXM4-40GB\n"}
    assert gpu_names(_no_driver, _tools(smi)) == ["NVIDIA A100-SXM4-40GB"] * 2
    assert gpu_names(_no_driver, _tools({})) is None
    assert gpu_description(_no_driver).startswith("none found (no CUDA driver here")


def test_gpus_through_the_stand_in_driver(monkeypatch):
    from tests.engines.fake_gpu import DESKTOP, NANO, FakeGpu

    FakeGpu([NANO, DESKTOP]).install(monkeypatch)
    assert gpu_names(run=_tools({})) == [NANO[0], DESKTOP[0]]


def test_a_jetson_nano_seen_through_its_files_and_tools():
    info = jetson_info(NANO_FILES.get, _tools(NANO_TOOLS))
    assert info == {"model": "NVIDIA Jetson Nano Developer Kit", "l4t": "32.7.1",
                    "jetpack": "4.6.1", "power_mode": "5W", "jetson_clocks": None,
                    "cpu0_khz": 1479000, "gpu_hz": 921600000}
    record = probe_machine(NANO_FILES.get, _tools(NANO_TOOLS), lambda: [NANO_GPU])
    assert record["cpu"] == "ARMv8 Processor rev 1 (v8l)" and record["gpus"] == [NANO_GPU.name]
    assert record["jetson"]["model"].startswith("NVIDIA Jetson Nano")


def test_elsewhere_there_is_no_jetson():
    assert jetson_info(lambda path: None, _tools({})) is None
    assert machine.power_mode(_tools({})) is None


def test_probe_reports_this_machine():
    env = probe_machine()
    assert env["cpu_count"] >= 1 and env["physical_cores"] >= 1
    assert env["numpy"] and env["python"]
    assert peak_rss_mb() > 0
