"""Dockerfile.l4t keeps its promises (no Docker engine or ARM here: the file is parsed)."""

import fnmatch
import glob
import json
import os
import re

import pytest

pytestmark = pytest.mark.device

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEVICE_SOURCES = {"pyproject.toml", "setup.py", "cvnet/__init__.py", "cvnet/core/", "engines/",
                  "jetson/", "benchmarks/",
                  "docker/wheels/"}


def instructions(path):
    """``[(INSTRUCTION, arguments)]`` with continuation lines joined and comments dropped."""
    with open(path) as handle:
        text = handle.read()
    lines, current = [], ""
    for line in text.splitlines():
        if line.strip().startswith("#") and not current:
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            keyword, _, rest = current.strip().partition(" ")
            lines.append((keyword.upper(), rest.strip()))
        current = ""
    return lines


@pytest.fixture(scope="module")
def dockerfile():
    return instructions(os.path.join(ROOT, "Dockerfile.l4t"))


def _all(dockerfile, keyword):
    return [rest for key, rest in dockerfile if key == keyword]


def test_base_image_is_a_pinned_build_argument(dockerfile):
    assert dockerfile[0][0] == "ARG"
    name, _, default = dockerfile[0][1].partition("=")
    assert name == "BASE_IMAGE"
    assert re.match(r"^nvcr\.io/nvidia/l4t-[a-z-]+:r32\.7\.1", default), default
    assert _all(dockerfile, "FROM") == ["${BASE_IMAGE}"]


def test_python36_pins_and_environment(dockerfile):
    runs = " ".join(_all(dockerfile, "RUN"))
    args = dict(rest.partition("=")[::2] for rest in _all(dockerfile, "ARG"))
    env = " ".join(_all(dockerfile, "ENV"))
    assert args["NUMPY_VERSION"] == "1.19.5" and "numpy==${NUMPY_VERSION}" in runs
    assert args["PYCUDA_VERSION"] == "2022.1" and "pycuda==${PYCUDA_VERSION}" in runs
    assert "OPENBLAS_CORETYPE=ARMV8" in env
    assert "/usr/local/cuda/bin" in env  # nvcc on PATH for pycuda's build
    assert "pip==21.3.1" in runs
    assert "torch" not in runs.lower() and "torch" not in " ".join(args.values()).lower()
    for command in re.split(r"&&|;", runs):
        if "pip install" in command:
            assert "--no-cache-dir" in command, command
        if "apt-get install" in command:
            assert "--no-install-recommends" in command, command
    assert "rm -rf /var/lib/apt/lists/*" in runs


def test_copies_only_the_device_side(dockerfile):
    sources = set()
    for rest in _all(dockerfile, "COPY"):
        parts = rest.split()
        sources.update(part for part in parts[:-1] if not part.startswith("--"))
    assert sources == DEVICE_SOURCES
    for source in sources:
        assert glob.glob(os.path.join(ROOT, source)), source
    with open(os.path.join(ROOT, ".dockerignore")) as handle:
        ignored = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    for host_only in ("tests", "export", "cvnet/models", ".venv*"):
        assert host_only in ignored


def test_smoke_step_and_entrypoint(dockerfile):
    runs = _all(dockerfile, "RUN")
    smoke = [run for run in runs if "compileall" in run]
    assert smoke and "import" in smoke[-1]
    for module in ("cvnet.engines", "cvnet.jetson", "cvnet.benchmarks"):
        assert module in smoke[-1]
    last_copy = max(i for i, (key, _) in enumerate(dockerfile) if key == "COPY")
    assert dockerfile.index(("RUN", smoke[-1])) > last_copy  # it checks what was copied
    assert json.loads(_all(dockerfile, "ENTRYPOINT")[-1]) == ["python3", "-m", "cvnet.jetson"]
    assert fnmatch.fnmatch(_all(dockerfile, "CMD")[-1], '*self-check*')
