# Set-up and checks; every target installs what it needs on a fresh machine.
#   make demo         host venv + cvnet, then the main job: cvnet-bench on built-in defaults
#   make test         host venv + cvnet, then the whole test suite
#   make test-device  Python 3.6 venv with the JetPack 4.6 pins and no torch, then the device tests
#   make gpu-check    on a CUDA machine: the GPU half end to end, report in gpu-check/ (docs/gpu.md)
PYTHON ?= python3
VENV ?= .venv
# The local CPU wheel on CI machines; `make TORCH_SPEC=torch` for a CUDA build.
TORCH_SPEC ?= torch==2.13.0
PY36 ?= $(shell pyenv root 2>/dev/null)/versions/3.6.15/bin/python
DEVICE_VENV ?= .venv-device
DEVICE_PINS = numpy==1.19.5 onnxruntime==1.10.0 opencv-python-headless==4.6.0.66 pytest==7.0.1
# Optional on the device, installed so that the FAISS tests run under Python 3.6 too: the last
# FAISS with cp36 wheels (x86_64, aarch64), which keeps numpy 1.19.5.
DEVICE_OPTIONAL = faiss-cpu==1.7.2
# Device-side code: cvnet/__init__.py, the torch-free core (cvnet/core) and the device packages.
DEVICE_SOURCES = cvnet/__init__.py cvnet/core $(wildcard engines jetson benchmarks)

# pytest, failing on its exit code 5 ("no tests collected"): a check that runs no test passes nothing.
define run_pytest
	$(1) -m pytest $(2); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc
endef

.PHONY: demo test test-device gpu-check

$(VENV)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q "$(TORCH_SPEC)"
	$(VENV)/bin/python -m pip install -q -e ".[dev]"
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/cvnet-summary cvnet
	$(VENV)/bin/cvnet-bench

# The suite is many small tensors: one thread per process is faster than two fighting.
test: $(VENV)/.installed
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(call run_pytest,$(VENV)/bin/python,)

$(DEVICE_VENV)/.installed:
	@test -x "$(PY36)" || { echo "Python 3.6 not found at '$(PY36)': install it (pyenv install 3.6.15) or pass PY36=/path/to/python3.6"; exit 1; }
	$(PY36) -m venv $(DEVICE_VENV)
	$(DEVICE_VENV)/bin/python -m pip install -q pip==21.3.1
	$(DEVICE_VENV)/bin/python -m pip install -q $(DEVICE_PINS)
	$(DEVICE_VENV)/bin/python -m pip install -q $(DEVICE_OPTIONAL) numpy==1.19.5
	touch $@

test-device: $(DEVICE_VENV)/.installed
	$(DEVICE_VENV)/bin/python -m compileall -q $(DEVICE_SOURCES) tests
	$(call run_pytest,$(DEVICE_VENV)/bin/python,-m device)

# No venv and no network: $(PYTHON) must already have a CUDA build of torch, numpy, opencv,
# tqdm and pytest (make gpu-check PYTHON=/path/to/python). Extra flags: GPU_CHECK_ARGS="--epochs 20".
GPU_CHECK_OUT ?= gpu-check
gpu-check:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(PYTHON) -m cvnet.gpucheck --output $(GPU_CHECK_OUT) $(GPU_CHECK_ARGS)
