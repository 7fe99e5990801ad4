"""What a benchmark ran on: CPU, cores, GPU, package versions, Jetson power mode, peak memory.

Everything here is best effort and never raises: a field that cannot be read is None (or says
why), so a benchmark on an unusual machine still reports what it can. Tools are run with a short
timeout and only when present (``nvidia-smi``, ``nvpmodel``).
"""

import logging
import os
import platform
import resource
import subprocess
import sys
from typing import Any, Dict, List, Optional, Sequence

from cvnet.core.threads import physical_cores, read_system_file, usable_cpus

logger = logging.getLogger(__name__)

JETSON_RELEASE = "/etc/nv_tegra_release"


def _command(args: List[str], timeout: float = 5.0) -> Optional[str]:
    """stdout of a command, or None when it is missing, fails or hangs."""
    try:
        out = subprocess.check_output(args, stderr=subprocess.DEVNULL, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.decode("utf-8", "replace").strip()


def cpu_model(cpuinfo: Optional[str] = None) -> Optional[str]:
    """The CPU's name from /proc/cpuinfo (``model name``, or ``Hardware`` on ARM boards)."""
    text = cpuinfo if cpuinfo is not None else read_system_file("/proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Model"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or None


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1024.0 if sys.platform != "darwin" else peak / 1048576.0, 1)


def gpu_names() -> Optional[List[str]]:
    """GPU names from ``nvidia-smi``, or None without one."""
    out = _command(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
    return [line.strip() for line in out.splitlines() if line.strip()] if out else None


def package_version(module: str) -> Optional[str]:
    """A package's version, importing it only if it is already loaded or cheap to load.

    torch is reported only when already imported (the device side never imports it).
    """
    if module == "torch" and "torch" not in sys.modules:
        return None
    try:
        loaded = __import__(module)
    except ImportError:
        return None
    except Exception as err:  # a broken install (missing CUDA libs) raises anything
        return "unusable ({})".format(type(err).__name__)
    return str(getattr(loaded, "__version__", "unknown"))


def jetson_info() -> Optional[Dict[str, Any]]:
    """On a Jetson: L4T release, power mode (nvpmodel) and current clocks; None elsewhere."""
    release = read_system_file(JETSON_RELEASE)
    if release is None:
        return None
    info = {"l4t": release.splitlines()[0].strip() if release.strip() else None}
    info["nvpmodel"] = _command(["nvpmodel", "-q"])
    info["jetson_clocks"] = _command(["jetson_clocks", "--show"])
    freq = read_system_file("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq")
    info["cpu0_khz"] = int(freq) if freq and freq.strip().isdigit() else None
    for path in ("/sys/devices/gpu.0/devfreq/57000000.gpu/cur_freq",
                 "/sys/devices/17000000.gv11b/devfreq/17000000.gv11b/cur_freq"):
        gpu = read_system_file(path)
        if gpu and gpu.strip().isdigit():
            info["gpu_hz"] = int(gpu)
            break
    return info


def load_average() -> Optional[List[float]]:
    """1, 5 and 15 minute load averages, or None."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def overload_warning(load: Optional[Sequence[float]], cpus: int) -> Optional[str]:
    """A warning when the 1-minute load average exceeds the CPUs, else None.

    Args:
        load: 1, 5 and 15 minute load averages (:func:`load_average`), or None.
        cpus: CPUs this process may run on.
    """
    if not load or load[0] <= cpus:
        return None
    return ("the 1-minute load average is {:.1f} on {} CPU{}: other processes compete for the "
            "cores, so the timings will be low and noisy (PyTorch's most of all); benchmark on "
            "a quiet machine, or report the load with the figures".format(
                load[0], cpus, "" if cpus == 1 else "s"))


def probe_environment() -> Dict[str, Any]:
    """The environment record of a benchmark report (JSON-ready)."""
    cpuinfo = read_system_file("/proc/cpuinfo")
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(cpuinfo),
        "cpu_count": usable_cpus(),
        "physical_cores": physical_cores(cpuinfo),
        "load_average": load_average(),
        "gpus": gpu_names(),
        "numpy": package_version("numpy"),
        "opencv": package_version("cv2"),
        "onnxruntime": package_version("onnxruntime"),
        "tensorrt": package_version("tensorrt"),
        "torch": package_version("torch"),
        "jetson": jetson_info(),
    }
