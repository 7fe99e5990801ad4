"""What machine this is: CPU, load, memory, GPUs, Jetson model and power mode, package versions.

The one machine probe of cvnet: ``cvnet-bench`` records it next to every measurement,
``python3 -m cvnet.jetson self-check`` judges it, and ``python3 -m cvnet.engines env`` prints it.
Everything here is best effort and never raises: a fact that cannot be read is None (or says
why), so an unusual machine still reports what it can.

Where each fact comes from, so that it works on a Jetson, which has no ``nvidia-smi``:

- GPUs: the CUDA driver itself, through ctypes (:func:`cvnet.engines.gpu.gpus`); ``nvidia-smi``
  only when the driver library cannot be loaded;
- the Jetson's model: ``/proc/device-tree/model``; its L4T release: ``/etc/nv_tegra_release``
  (and so the JetPack release); its power mode: ``nvpmodel -q``; clocks from ``/sys``;
- CPU model and cores: ``/proc/cpuinfo`` (:mod:`cvnet.core.cpu`); load: ``os.getloadavg``.

Files are read through a ``read(path) -> text or None`` and tools run through a
``run(argv) -> stdout or None``, both injectable, so tests give fake ``/proc`` files and tools.
Device-side: Python 3.6, standard library only (packages are imported only to read a version).
"""

import importlib
import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence

from cvnet.core.errors import CVNetError
from cvnet.core.cpu import load_average, physical_cores, read_system_file, usable_cpus

#: ``read(path)``: a file's text, or None when it cannot be read.
Reader = Callable[[str], Optional[str]]
#: ``run(argv)``: a tool's standard output, or None when it is missing, fails or hangs.
ToolRunner = Callable[[List[str]], Optional[str]]

TEGRA_RELEASE = "/etc/nv_tegra_release"
DEVICE_TREE_MODEL = "/proc/device-tree/model"
#: L4T release -> JetPack release (JetPack 4.6.x, the Nano's last line).
JETPACK_OF_L4T = {"32.6.1": "4.6", "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3",
                  "32.7.4": "4.6.4", "32.7.5": "4.6.5", "32.7.6": "4.6.6"}
#: Current GPU clock files of the Jetson families (Nano/TX1, Xavier).
GPU_FREQ_FILES = ("/sys/devices/gpu.0/devfreq/57000000.gpu/cur_freq",
                  "/sys/devices/17000000.gv11b/devfreq/17000000.gv11b/cur_freq")
CPU0_FREQ_FILE = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"
#: The packages whose versions a report records, by import name.
PACKAGES = ("numpy", "cv2", "onnxruntime", "openvino", "tensorrt", "pycuda", "torch")


def run_tool(args: List[str], timeout: float = 5.0) -> Optional[str]:
    """A tool's standard output, or None when it is not installed, fails or hangs."""
    if shutil.which(args[0]) is None:
        return None
    try:
        out = subprocess.check_output(args, stderr=subprocess.DEVNULL, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.decode("utf-8", "replace").strip()


# -- CPU, load, memory -----------------------------------------------------------------------


def cpu_model(cpuinfo: Optional[str] = None) -> Optional[str]:
    """The CPU's name from /proc/cpuinfo (``model name``, or ``Hardware`` on ARM boards)."""
    text = cpuinfo if cpuinfo is not None else read_system_file("/proc/cpuinfo") or ""
    for key in ("model name", "Hardware", "Model"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or None


def peak_rss_mb() -> Optional[float]:
    """Peak resident memory of this process so far, MiB (Linux reports KiB); None off POSIX."""
    try:
        import resource  # POSIX only: not importable on Windows
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / 1024.0 if sys.platform != "darwin" else peak / 1048576.0, 1)


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


# -- packages --------------------------------------------------------------------------------


#: :class:`Probe` statuses: imported; not installed (ImportError); installed but broken.
OK, MISSING, UNUSABLE = "ok", "missing", "unusable"


class Probe(NamedTuple):
    """What importing an optional package found.

    Attributes:
        status: :data:`OK`, :data:`MISSING` (``ImportError``: not installed, or a dependency
            of it is not) or :data:`UNUSABLE` (installed, but importing it raised something
            else: a missing CUDA library's ``OSError``, an ABI mismatch...).
        text: One line for a report: the version, or why it cannot be used.
    """

    status: str
    text: str


def installed(module: str) -> bool:
    """Whether a package is installed, found without importing it: cheap enough for ``--help``
    and for a list of what to install, but blind to a package that is present and broken (for
    that, :func:`probe` imports it)."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a half-removed module
        return False


def probe(module: str, importer: Callable[[str], Any] = importlib.import_module) -> Probe:
    """Imports an optional package and says what was found.

    Importing is the only honest test (a package can be present and fail to load), so this
    imports it; call it from commands that report the machine, not from library code paths.

    Args:
        module: The import name (``"tensorrt"``, ``"cv2"``...).
        importer: Imports a module by name (a test's stand-in).
    """
    try:
        imported = importer(module)
    except ImportError as err:
        return Probe(MISSING, "not importable ({})".format(err))
    except Exception as err:  # a broken install (missing CUDA libraries) raises anything
        return Probe(UNUSABLE, "unusable ({}: {})".format(type(err).__name__, err))
    return Probe(OK, str(getattr(imported, "__version__", getattr(imported, "VERSION",
                                                                  "installed"))))


def package_version(module: str) -> Optional[str]:
    """A package's version for a report: None when it is not installed here, the reason when it
    is installed but unusable.

    torch is reported only when already imported (the device side never imports it).
    """
    if module == "torch" and "torch" not in sys.modules:
        return None
    found = probe(module)
    return None if found.status == MISSING else found.text


# -- GPUs ------------------------------------------------------------------------------------


def _driver_gpus() -> List[Any]:
    from cvnet.engines.gpu import gpus  # ctypes only; imported here to keep the probe cheap

    return gpus()


def gpu_names(query: Callable[[], List[Any]] = _driver_gpus,
              run: ToolRunner = run_tool) -> Optional[List[str]]:
    """The GPUs' names: from the CUDA driver, else ``nvidia-smi``; None when neither answers.

    Args:
        query: Lists the driver's devices (:func:`cvnet.engines.gpu.gpus`).
        run: Runs ``nvidia-smi``, the fallback where the driver library cannot be loaded.
    """
    try:
        return [gpu.name for gpu in query()]
    except CVNetError:
        pass
    out = run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"])
    return [line.strip() for line in out.splitlines() if line.strip()] if out else None


def gpu_description(query: Callable[[], List[Any]] = _driver_gpus) -> str:
    """GPU 0 in words, e.g. ``"NVIDIA Tegra X1 (compute capability 5.3)"``, or why none."""
    try:
        found = query()
    except CVNetError as err:
        return "none found ({})".format(err)
    if not found:
        return "none found (the CUDA driver lists no device)"
    return "{} (compute capability {})".format(found[0].name, found[0].compute_capability)


# -- Jetson ----------------------------------------------------------------------------------


def l4t_release(path: str = TEGRA_RELEASE, read: Reader = read_system_file) -> Optional[str]:
    """``"32.7.1"`` from ``/etc/nv_tegra_release``; None off Jetson."""
    text = read(path)
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text or "")
    return "{}.{}".format(match.group(1), match.group(2)) if match else None


def jetson_model(read: Reader = read_system_file) -> Optional[str]:
    """The board's name from the device tree, e.g. ``"NVIDIA Jetson Nano Developer Kit"``."""
    model = (read(DEVICE_TREE_MODEL) or "").replace("\x00", "").strip()
    return model or None


def power_mode(run: ToolRunner = run_tool) -> Optional[str]:
    """The nvpmodel power mode (e.g. ``"MAXN"``, ``"5W"``); None without nvpmodel."""
    text = run(["nvpmodel", "-q"])
    if text is None:
        return None
    match = re.search(r"NV Power Mode:\s*(\S+)", text)
    return match.group(1) if match else (text.splitlines()[0] if text else "unknown")


def cuda_version() -> str:
    """The CUDA toolkit version from ``/usr/local/cuda``, or why it is unknown."""
    for name in ("version.txt", "version.json"):
        text = read_system_file(os.path.join("/usr/local/cuda", name))
        match = re.search(r"(\d+\.\d+(\.\d+)?)", text or "")
        if match:
            return match.group(1)
    nvcc = shutil.which("nvcc")
    return "toolkit not found{}".format(" (nvcc at {})".format(nvcc) if nvcc else "")


def _number(text: Optional[str]) -> Optional[int]:
    return int(text) if text and text.strip().isdigit() else None


def jetson_info(read: Reader = read_system_file, run: ToolRunner = run_tool
                ) -> Optional[Dict[str, Any]]:
    """On a Jetson: model, L4T and JetPack releases, power mode and clocks; None elsewhere."""
    l4t = l4t_release(read=read)
    model = jetson_model(read)
    if l4t is None and (model is None or "jetson" not in model.lower()):
        return None
    return {"model": model, "l4t": l4t, "jetpack": JETPACK_OF_L4T.get(l4t) if l4t else None,
            "power_mode": power_mode(run), "jetson_clocks": run(["jetson_clocks", "--show"]),
            "cpu0_khz": _number(read(CPU0_FREQ_FILE)),
            "gpu_hz": next((hz for hz in (_number(read(path)) for path in GPU_FREQ_FILES)
                            if hz is not None), None)}


# -- the record ------------------------------------------------------------------------------


def probe_machine(read: Reader = read_system_file, run: ToolRunner = run_tool,
                  query: Callable[[], List[Any]] = _driver_gpus) -> Dict[str, Any]:
    """The machine as a JSON-ready record (a benchmark report's ``environment``)."""
    cpuinfo = read("/proc/cpuinfo")
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(cpuinfo or ""),
        "cpu_count": usable_cpus(),
        "physical_cores": physical_cores(cpuinfo, read),
        "load_average": load_average(),
        "gpus": gpu_names(query, run),
        "numpy": package_version("numpy"),
        "opencv": package_version("cv2"),
        "onnxruntime": package_version("onnxruntime"),
        "openvino": package_version("openvino"),
        "tensorrt": package_version("tensorrt"),
        "torch": package_version("torch"),
        "jetson": jetson_info(read, run),
    }
