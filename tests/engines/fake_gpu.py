"""A stand-in CUDA driver (for cvnet.engines.gpu's ctypes calls) and pycuda, over pretend memory.

Hand-written from the CUDA driver API's documented behaviour and pycuda's sources
(inducer/pycuda ``src/cpp/cuda.hpp``: context push/pop/detach, primary contexts), NOT read
from a real surface as fake_tensorrt is: no pycuda wheel can be installed without CUDA. What it
keeps track of is what the runner and the builder must get right:

- each thread's context stack (driver level) and pycuda's own stack, and each device's
  primary-context retain count: a clean shutdown leaves every stack empty and every count 0;
- device allocations, and the operations queued on each stream: an async copy or an execution
  runs when its stream is synchronised (so reading a host buffer before the synchronisation
  reads stale data, as it would on a GPU), and freeing memory a queued operation still uses
  is recorded as a violation;
- pycuda calls that need a current context fail without one, as pycuda's do.

It proves the order of calls cvnet makes; it proves nothing about CUDA or pycuda themselves.
"""

import threading
import types
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np


class PycudaError(Exception):
    """The stand-in ``pycuda.driver.Error``."""


#: CUresult codes (cuda.h).
CUDA_SUCCESS, CUDA_ERROR_INVALID_DEVICE, CUDA_ERROR_INVALID_CONTEXT = 0, 101, 201
#: Devices: (name, compute capability).
NANO = ("NVIDIA Tegra X1", (5, 3))
DESKTOP = ("NVIDIA GeForce RTX 3060", (8, 6))


class FakeGpu(object):
    """Pretend GPUs, shared by the stand-in driver, pycuda and fake_tensorrt's engines.

    Args:
        devices: (name, (major, minor)) per device ordinal.
    """

    def __init__(self, devices: Sequence[Tuple[str, Tuple[int, int]]] = (NANO,)):
        self.devices = list(devices)
        self.stacks = {}  # type: Dict[int, List[int]]
        self.pycuda_stacks = {}  # type: Dict[int, List[Any]]
        self.retains = {i: 0 for i in range(len(self.devices))}  # type: Dict[int, int]
        self.memory = OrderedDict()  # type: Dict[int, bytearray]
        self.streams = {}  # type: Dict[int, List[Tuple[Callable[[], None], str, List[int]]]]
        self.violations = []  # type: List[str]
        self.events = []  # type: List[str]
        self._next = 0x10000
        self._lock = threading.RLock()
        self.driver = FakeDriver(self)

    # -- contexts ---------------------------------------------------------------------------

    @staticmethod
    def handle(device: int) -> int:
        """The (constant) handle of a device's primary context."""
        return 0xC000 + device

    def stack(self) -> List[int]:
        return self.stacks.setdefault(threading.get_ident(), [])

    def current_device(self) -> Optional[int]:
        """The device whose context is current on the calling thread, or None."""
        stack = self.stack()
        return stack[-1] - 0xC000 if stack else None

    def require_context(self, what: str) -> None:
        if not self.pycuda_stacks.get(threading.get_ident()):
            raise PycudaError("{}: explicit_context_dependent failed: invalid device context - "
                              "no currently active context?".format(what))

    # -- memory and streams -----------------------------------------------------------------

    def allocate(self, nbytes: int) -> int:
        with self._lock:
            address, self._next = self._next, self._next + max(int(nbytes), 1) + 0x100
            self.memory[address] = bytearray(int(nbytes))
        self.events.append("alloc {}".format(nbytes))
        return address

    def free(self, address: int) -> None:
        for handle, pending in self.streams.items():
            users = [what for _, what, touched in pending if address in touched]
            if users:
                self.violations.append("freed device memory {:#x} while stream {} still had {} "
                                       "queued on it".format(address, handle, ", ".join(users)))
        if self.memory.pop(address, None) is None:
            raise PycudaError("cuMemFree failed: invalid argument (freed twice?)")
        self.events.append("free")

    def read(self, address: int, shape: Sequence[int], dtype: Any) -> np.ndarray:
        count = int(np.prod(shape))
        data = np.frombuffer(bytes(self.memory[address]), dtype=dtype, count=count)
        return data.reshape(tuple(shape)).copy()

    def write(self, address: int, array: np.ndarray) -> None:
        raw = np.ascontiguousarray(array).tobytes()
        self.memory[address][:len(raw)] = raw

    def new_stream(self) -> int:
        with self._lock:
            handle, self._next = self._next, self._next + 1
        self.streams[handle] = []
        return handle

    def enqueue(self, handle: int, operation: Callable[[], None], what: str,
                reads: Sequence[int] = (), writes: Sequence[int] = ()) -> None:
        if handle not in self.streams:
            self.violations.append("{} queued on unknown stream {}".format(what, handle))
            return
        if self.current_device() is None:
            self.violations.append("{} queued with no CUDA context current".format(what))
        self.streams[handle].append((operation, what, list(reads) + list(writes)))
        self.events.append("queue " + what)

    def synchronize(self, handle: int) -> None:
        pending, self.streams[handle] = self.streams[handle], []
        for operation, _, _ in pending:
            operation()
        self.events.append("synchronize")

    def problems(self) -> List[str]:
        """Everything a clean shutdown must not leave behind."""
        found = list(self.violations)
        found += ["thread {} still has contexts {} current".format(t, s)
                  for t, s in self.stacks.items() if s]
        found += ["pycuda's context stack of thread {} is not empty".format(t)
                  for t, s in self.pycuda_stacks.items() if s]
        found += ["device {}'s primary context is still retained {} time(s)".format(d, n)
                  for d, n in self.retains.items() if n]
        found += ["{} device allocation(s) never freed".format(len(self.memory))] \
            if self.memory else []
        return found

    # -- pycuda ------------------------------------------------------------------------------

    def modules(self) -> Dict[str, types.ModuleType]:
        """``pycuda``, ``pycuda.driver`` and ``pycuda.tools`` stand-ins over this GPU."""
        driver = types.ModuleType("pycuda.driver")
        gpu = self
        Error = PycudaError

        class Context(object):
            def __init__(self, device: int):
                self.device, self.valid, self.thread = device, True, threading.get_ident()

            @property
            def handle(self) -> int:
                return gpu.handle(self.device)

            def push(self) -> None:
                """pycuda's context_push: only one pycuda context is on the driver stack."""
                own = gpu.pycuda_stacks.setdefault(threading.get_ident(), [])
                if own:
                    gpu.stack().pop()
                gpu.stack().append(self.handle)
                own.append(self)
                gpu.events.append("push {}".format(self.device))

            @staticmethod
            def pop() -> None:
                own = gpu.pycuda_stacks.get(threading.get_ident())
                if not own:
                    raise Error("context::pop: cannot pop non-current context")
                gpu.stack().pop()
                own.pop()
                if own:
                    gpu.stack().append(own[-1].handle)
                gpu.events.append("pop")

            def detach(self) -> None:
                """pycuda's context::detach of a primary context (cuda.hpp)."""
                if not self.valid:
                    raise Error("context::detach: cannot detach from invalid context")
                own = gpu.pycuda_stacks.get(threading.get_ident(), [])
                if own and own[-1] is self:
                    gpu.release(self.device)  # cuDevicePrimaryCtxRelease never pops
                    own.pop()  # current_context(this) drops it from pycuda's stack
                    if own:
                        gpu.stack().append(own[-1].handle)
                elif self.thread == threading.get_ident():
                    gpu.stack().append(self.handle)  # cuCtxPushCurrent, then the release
                    gpu.release(self.device)
                self.valid = False
                gpu.events.append("detach {}".format(self.device))

        class Device(object):
            def __init__(self, ordinal: int):
                if not 0 <= ordinal < len(gpu.devices):
                    raise Error("cuDeviceGet failed: invalid device ordinal")
                self.ordinal = ordinal

            def retain_primary_context(self) -> Context:
                gpu.retains[self.ordinal] += 1
                gpu.events.append("retain {}".format(self.ordinal))
                return Context(self.ordinal)

            def name(self) -> str:
                return gpu.devices[self.ordinal][0]

        class DeviceAllocation(object):
            def __init__(self, nbytes: int):
                self.address = gpu.allocate(nbytes)
                self.freed = False

            def __int__(self) -> int:
                return self.address

            __index__ = __int__

            def free(self) -> None:
                gpu.free(self.address)
                self.freed = True

        class Stream(object):
            def __init__(self, flags: int = 0):
                gpu.require_context("Stream")
                self.handle = gpu.new_stream()

            def synchronize(self) -> None:
                gpu.synchronize(self.handle)

        def mem_alloc(nbytes: int) -> DeviceAllocation:
            gpu.require_context("mem_alloc")
            return DeviceAllocation(nbytes)

        def pagelocked_empty(shape: Any, dtype: Any, order: str = "C",
                             mem_flags: int = 0) -> np.ndarray:
            gpu.require_context("pagelocked_empty")
            return np.empty(shape, dtype)

        def memcpy_htod_async(dest: Any, src: np.ndarray, stream: Any = None) -> None:
            gpu.require_context("memcpy_htod_async")
            address = int(dest)
            gpu.enqueue(stream.handle, lambda: gpu.write(address, src), "copy to device",
                        writes=[address])

        def memcpy_dtoh_async(dest: np.ndarray, src: Any, stream: Any = None) -> None:
            gpu.require_context("memcpy_dtoh_async")
            address = int(src)

            def copy() -> None:
                dest[...] = gpu.read(address, dest.shape, dest.dtype)

            gpu.enqueue(stream.handle, copy, "copy to host", reads=[address])

        def memcpy_htod(dest: Any, src: np.ndarray) -> None:
            gpu.require_context("memcpy_htod")
            gpu.write(int(dest), src)

        driver.Error, driver.LogicError = Error, Error
        driver.Context, driver.Device, driver.Stream = Context, Device, Stream
        driver.init = lambda flags=0: gpu.events.append("init")
        driver.mem_alloc, driver.pagelocked_empty = mem_alloc, pagelocked_empty
        driver.memcpy_htod_async, driver.memcpy_dtoh_async = memcpy_htod_async, memcpy_dtoh_async
        driver.memcpy_htod = memcpy_htod
        tools = types.ModuleType("pycuda.tools")
        tools.clear_context_caches = lambda: gpu.events.append("clear_context_caches")
        package = types.ModuleType("pycuda")
        package.__path__ = []  # type: ignore[attr-defined]
        package.driver, package.tools = driver, tools  # type: ignore[attr-defined]
        return {"pycuda": package, "pycuda.driver": driver, "pycuda.tools": tools}

    def release(self, device: int) -> None:
        if self.retains[device] <= 0:
            self.violations.append("device {}'s primary context released more often than "
                                   "retained".format(device))
            return
        self.retains[device] -= 1
        self.events.append("release {}".format(device))

    def install(self, monkeypatch: Any) -> None:
        """Makes ``import pycuda.driver`` and cvnet.engines.gpu's driver calls use this GPU."""
        import sys

        from cvnet.engines import gpu as gpu_module

        for name, module in self.modules().items():
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.setattr(gpu_module, "_load_driver", lambda: self.driver)


def _target(reference: Any) -> Any:
    """The ctypes object behind ``ctypes.byref(x)`` (or ``x`` itself)."""
    return getattr(reference, "_obj", reference)


def _value(argument: Any) -> int:
    return int(getattr(argument, "value", argument) or 0)


class FakeDriver(object):
    """The libcuda.so.1 functions cvnet.engines.gpu calls (ctypes), over a :class:`FakeGpu`."""

    def __init__(self, gpu: FakeGpu):
        self._gpu = gpu

    def cuInit(self, flags: int) -> int:
        return CUDA_SUCCESS

    def cuGetErrorString(self, result: int, text: Any) -> int:
        _target(text).value = {CUDA_ERROR_INVALID_DEVICE: b"invalid device ordinal",
                               CUDA_ERROR_INVALID_CONTEXT: b"invalid device context"}.get(
                                   result, b"unknown error")
        return CUDA_SUCCESS

    def cuDeviceGetCount(self, count: Any) -> int:
        _target(count).value = len(self._gpu.devices)
        return CUDA_SUCCESS

    def cuDeviceGet(self, device: Any, ordinal: int) -> int:
        if not 0 <= _value(ordinal) < len(self._gpu.devices):
            return CUDA_ERROR_INVALID_DEVICE
        _target(device).value = _value(ordinal)
        return CUDA_SUCCESS

    def cuDeviceGetName(self, buffer: Any, length: int, device: Any) -> int:
        buffer.value = self._gpu.devices[_value(device)][0].encode()
        return CUDA_SUCCESS

    def cuDeviceGetAttribute(self, value: Any, attribute: int, device: Any) -> int:
        major, minor = self._gpu.devices[_value(device)][1]
        _target(value).value = {75: major, 76: minor}[_value(attribute)]
        return CUDA_SUCCESS

    def cuDevicePrimaryCtxRetain(self, context: Any, device: Any) -> int:
        ordinal = _value(device)
        self._gpu.retains[ordinal] += 1
        self._gpu.events.append("retain {}".format(ordinal))
        _target(context).value = self._gpu.handle(ordinal)
        return CUDA_SUCCESS

    def cuDevicePrimaryCtxRelease(self, device: Any) -> int:
        self._gpu.release(_value(device))
        return CUDA_SUCCESS

    cuDevicePrimaryCtxRelease_v2 = cuDevicePrimaryCtxRelease

    def cuCtxPushCurrent_v2(self, context: Any) -> int:
        self._gpu.stack().append(_value(context))
        self._gpu.events.append("push {}".format(_value(context) - 0xC000))
        return CUDA_SUCCESS

    def cuCtxPopCurrent_v2(self, context: Any) -> int:
        stack = self._gpu.stack()
        if not stack:
            return CUDA_ERROR_INVALID_CONTEXT
        _target(context).value = stack.pop()
        self._gpu.events.append("pop")
        return CUDA_SUCCESS

    def cuCtxGetCurrent(self, context: Any) -> int:
        stack = self._gpu.stack()
        _target(context).value = stack[-1] if stack else None
        return CUDA_SUCCESS
