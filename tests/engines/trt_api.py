"""TensorRT's real Python API surfaces: committed per version, re-read from NVIDIA's wheels.

A *surface* is what ``import tensorrt`` offers: every class with its methods (pybind11
signatures, argument names included), properties (read-only or not) and nested enums, every
enum with its members and values, the module's functions and constants. It is data about names
and signatures; it says nothing about what TensorRT does.

Where the surfaces come from (``tests/engines/data/trt_api/surface-<version>.json``):

- 8.6.1, 10.3.0 and 11.4.0.106: NVIDIA's Python *bindings* wheels on PyPI
  (``tensorrt-bindings``, ``tensorrt-cu12-bindings``). ``tensorrt_bindings/tensorrt.so`` links
  against ``libnvinfer.so.N``, ``libnvonnxparser.so.N`` and ``libnvinfer_plugin.so.N`` but
  needs only a dozen of their C symbols to load. Stub libraries exporting those names (each
  returns 0/NULL, compiled with ``gcc -shared -fPIC``) on ``LD_LIBRARY_PATH`` let the real
  module import in a child interpreter, where :func:`describe` reads it. Nothing can be built
  or run with it: ``trt.Builder(logger)`` gets a NULL builder.
- 8.2.1, the Jetson Nano's (JetPack 4.6.x), has no wheel: :func:`surface_from_source` parses
  NVIDIA/TensorRT's pybind11 sources at tag 8.2.1 (``python/src/**/*.cpp``) and
  ``python/packaging/tensorrt/__init__.py``. That is approximate: names, kinds and argument
  names (with which have defaults) are read; types are not, and enum values are the order of
  declaration.

``tests/engines/test_trt_api.py`` re-reads the wheels at test time and fails when they differ
from the committed files, so the stand-ins built from these files (``fake_tensorrt.py``) cannot
drift from the real API unnoticed.

Command line (regenerating the committed files; needs pip reaching PyPI, gcc, nm, readelf)::

    python3 tests/engines/trt_api.py dump 10.3.0            # -> data/trt_api/surface-10.3.0.json
    python3 tests/engines/trt_api.py from-source GIT_DIR 8.2.1 8.2.1   # NVIDIA/TensorRT clone

This module imports nothing outside the standard library, so it also runs as a script in the
child interpreter that imports the wheel.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import types
import zipfile
from collections import OrderedDict
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
SURFACE_DIR = os.path.join(HERE, "data", "trt_api")
#: Set to 1 where the live check must run (CI): a missing network, gcc or binutils then fails
#: the test instead of skipping it.
REQUIRE_ENV = "CVNET_REQUIRE_TRT_API"


class Wheel(NamedTuple):
    """A PyPI bindings wheel and the CPython versions it exists for (both ends included)."""

    package: str
    version: str
    python_min: Tuple[int, int]
    python_max: Tuple[int, int]


#: The wheel each committed surface is read from. 8.6.1 is the newest release for JetPack 5
#: (Xavier/Orin) and the only bindings wheel for CPython 3.6; 10.3.0 is JetPack 6's; 11.4.0.106
#: the newest 11.x. Ranges from ``pip download --python-version`` against PyPI.
WHEELS = OrderedDict([
    ("8.6.1", Wheel("tensorrt-bindings", "8.6.1", (3, 6), (3, 11))),
    ("10.3.0", Wheel("tensorrt-cu12-bindings", "10.3.0", (3, 8), (3, 12))),
    ("11.4.0.106", Wheel("tensorrt-cu12-bindings", "11.4.0.106", (3, 8), (3, 13))),
])
#: Versions without a wheel, read from NVIDIA/TensorRT's sources at this tag.
SOURCE_TAGS = OrderedDict([("8.2.1", "8.2.1")])
#: Every committed surface, oldest first.
VERSIONS = tuple(SOURCE_TAGS) + tuple(WHEELS)

#: Dunder members worth recording (the rest are pybind11/object plumbing).
KEPT_DUNDERS = frozenset(("__init__", "__len__", "__getitem__", "__setitem__", "__iter__",
                          "__enter__", "__exit__", "__int__", "__index__", "__call__",
                          "__buffer__", "__bytes__", "__del__"))


class Unavailable(Exception):
    """The live surface cannot be read here (no network, no gcc, no wheel for this machine)."""


# ---------------------------------------------------------------------------------------------
# Committed surfaces


def surface_path(version: str) -> str:
    """The committed surface file of one version."""
    return os.path.join(SURFACE_DIR, "surface-{}.json".format(version))


_LOADED = {}  # type: Dict[str, Dict[str, Any]]


def load_surface(version: str) -> Dict[str, Any]:
    """The committed surface of ``version`` (one of :data:`VERSIONS`), read once per process."""
    if version not in _LOADED:
        if version not in VERSIONS:
            raise KeyError("no committed TensorRT surface for {!r}; there are {}".format(
                version, ", ".join(VERSIONS)))
        with open(surface_path(version)) as handle:
            _LOADED[version] = json.load(handle)
    return _LOADED[version]


class Param(NamedTuple):
    """One argument of a signature: its name, and whether it has a default."""

    name: str
    has_default: bool


def signature_params(signature: str) -> Optional[List[Param]]:
    """The arguments of one signature line, ``self`` excluded.

    Reads both the pybind11 form ``f(self: T, a: int, b: X = 0) -> R`` and the source-derived
    form ``f(a, b=...)``; returns None for ``f(*args, **kwargs)`` and for ``f(?)`` (a source
    ``.def`` that names no argument, so its arguments are unknown).
    """
    inner = signature[signature.find("(") + 1:]
    depth, pieces, current = 0, [], ""
    for char in inner:
        if char in "([{<":
            depth += 1
        elif char in ")]}>":
            if depth == 0:
                break
            depth -= 1
        if char == "," and depth == 0:
            pieces.append(current)
            current = ""
        else:
            current += char
    pieces.append(current)
    params = []
    for piece in (p.strip() for p in pieces):
        if not piece:
            continue
        if piece.startswith("*") or piece == "?":
            return None
        name = re.split(r"[:=\s]", piece, 1)[0]
        if name == "self":
            continue
        params.append(Param(name, "=" in _outside_brackets(piece)))
    return params


def _outside_brackets(text: str) -> str:
    depth, kept = 0, []
    for char in text:
        if char in "([{<":
            depth += 1
        elif char in ")]}>":
            depth -= 1
        elif depth == 0:
            kept.append(char)
    return "".join(kept)


# ---------------------------------------------------------------------------------------------
# Reading a live module


def _is_enum(obj: Any) -> bool:
    return isinstance(obj, type) and isinstance(getattr(obj, "__members__", None), dict)


def _value_text(value: Any) -> str:
    if _is_enum(type(value)):
        return "{}.{}".format(type(value).__name__, value.name)
    return type(value).__name__


def _signatures(doc: Optional[str], name: str) -> List[str]:
    found = []
    for line in (doc or "").splitlines():
        line = line.strip()
        if line[:1].isdigit() and ". " in line:
            line = line.split(". ", 1)[1]
        if line.startswith(name + "(") and not line.startswith(name + "(*args, **kwargs)"):
            found.append(line.replace("tensorrt_bindings.tensorrt.", "tensorrt."))
    if not found and (doc or "").strip().startswith(name + "(*args, **kwargs)"):
        found.append(name + "(*args, **kwargs)")
    return found


def _enum_members(enum: type) -> Dict[str, Any]:
    members = OrderedDict()
    for name, value in enum.__members__.items():
        try:
            members[name] = int(value)
        except (TypeError, ValueError):
            members[name] = None
    return dict(members)


def _describe_member(cls: type, name: str) -> Dict[str, Any]:
    raw = None
    for base in cls.__mro__:
        if name in base.__dict__:
            raw = base.__dict__[name]
            break
    if raw is None:
        raw = getattr(cls, name)
    if isinstance(raw, property):
        return {"kind": "property", "readonly": raw.fset is None}
    if _is_enum(raw):
        return {"kind": "enum", "members": _enum_members(raw)}
    if isinstance(raw, type):
        return {"kind": "class"}
    if isinstance(raw, (staticmethod, classmethod)):
        return {"kind": "staticmethod", "signatures": _signatures(raw.__func__.__doc__, name)}
    if callable(raw):
        kind = ("staticmethod" if type(raw).__name__ == "builtin_function_or_method"
                and not name.startswith("__") else "method")
        return {"kind": kind, "signatures": _signatures(getattr(raw, "__doc__", None), name)}
    return {"kind": "attribute", "value": _value_text(raw)}


def _describe_class(cls: type) -> Dict[str, Any]:
    members = {}
    for name in dir(cls):
        if name.startswith("_") and name not in KEPT_DUNDERS:
            continue
        members[name] = _describe_member(cls, name)
    bases = [base.__name__ for base in cls.__mro__[1:]
             if base.__name__ not in ("object", "pybind11_object")]
    return {"bases": bases, "members": members}


def describe(module: types.ModuleType) -> Dict[str, Any]:
    """The surface of an imported ``tensorrt`` (or ``tensorrt_bindings``) module."""
    surface = {"version": str(getattr(module, "__version__", "")), "classes": {}, "enums": {},
               "functions": {}, "constants": {}}  # type: Dict[str, Any]
    for name in sorted(dir(module)):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if isinstance(obj, types.ModuleType):
            continue
        if _is_enum(obj):
            surface["enums"][name] = _enum_members(obj)
        elif isinstance(obj, type):
            surface["classes"][name] = _describe_class(obj)
        elif callable(obj):
            surface["functions"][name] = {"signatures": _signatures(obj.__doc__, name)}
        else:
            surface["constants"][name] = _value_text(obj)
    return surface


# ---------------------------------------------------------------------------------------------
# Reading a wheel: download (cached), stub libraries, import in a child interpreter


def cache_dir() -> str:
    """Where downloaded wheels are kept: ``$CVNET_CACHE/trt-bindings`` or ``~/.cache/cvnet/...``."""
    root = os.environ.get("CVNET_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                          "cvnet")
    return os.path.join(root, "trt-bindings")


def python_supported(wheel: Wheel, version_info: Sequence[int] = sys.version_info) -> bool:
    """Whether ``wheel`` exists for this CPython."""
    return wheel.python_min <= tuple(version_info[:2]) <= wheel.python_max


def _run(command: Sequence[str], **kwargs: Any) -> str:
    try:
        done = subprocess.run(list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, **kwargs)
    except OSError as err:
        raise Unavailable("cannot run {}: {}".format(command[0], err))
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("ERROR")] or lines[-3:]
        raise Unavailable("{} failed (exit {}): {}".format(
            " ".join(os.path.basename(c) for c in command[:4]), done.returncode,
            " ".join(errors)[-1000:]))
    return done.stdout


def fetch_wheel(wheel: Wheel, folder: Optional[str] = None) -> str:
    """The wheel file for this interpreter, from the cache or downloaded into it with pip.

    Raises:
        Unavailable: Not x86-64 Linux, or pip cannot download it (no network).
    """
    if not (sys.platform.startswith("linux") and os.uname().machine == "x86_64"):
        raise Unavailable("NVIDIA publishes the bindings wheels for x86-64 Linux only; this is "
                          "{} {}".format(sys.platform, os.uname().machine))
    folder = folder or cache_dir()
    pattern = os.path.join(folder, "{}-{}-cp{}{}-*.whl".format(
        wheel.package.replace("-", "_"), wheel.version, *sys.version_info[:2]))
    found = sorted(glob.glob(pattern))
    if not found:
        os.makedirs(folder, exist_ok=True)
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
              "--only-binary=:all:", "--disable-pip-version-check",
              "{}=={}".format(wheel.package, wheel.version), "--dest", folder])
        found = sorted(glob.glob(pattern))
    if not found:
        raise Unavailable("pip downloaded no file matching {}".format(pattern))
    return found[-1]


#: Which stub library a symbol goes into (the dynamic linker resolves an undefined symbol from
#: any loaded library; this only keeps each stub close to the real one).
_LIBRARY_OF = ((re.compile(r"OnnxParser|onnx", re.I), "libnvonnxparser"),
               (re.compile(r"nvuffparser|nvcaffeparser"), "libnvparsers"),
               (re.compile(r"Plugin"), "libnvinfer_plugin"))


def build_stubs(extension: str, folder: str) -> Dict[str, List[str]]:
    """Compiles a stub for each ``libnv*`` library ``extension`` needs; returns their symbols.

    Raises:
        Unavailable: readelf, nm or gcc is missing or fails.
    """
    for tool in ("gcc", "nm", "readelf"):
        if shutil.which(tool) is None:
            raise Unavailable("{} is not installed (the stubs need gcc and binutils)".format(tool))
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(libnv[^\]]+)\]",
                        _run(["readelf", "-d", extension]))
    if not needed:
        raise Unavailable("{} needs no libnv* library: not a TensorRT bindings module".format(
            extension))
    default = next((lib for lib in needed if lib.startswith("libnvinfer.so")), needed[0])
    symbols = OrderedDict((lib, []) for lib in needed)  # type: Dict[str, List[str]]
    for line in _run(["nm", "-D", "--undefined-only", extension]).splitlines():
        parts = line.split()
        if len(parts) != 2 or parts[0] != "U" or "@" in parts[1] or re.match(r"_?Py", parts[1]):
            continue
        target = default
        for pattern, stem in _LIBRARY_OF:
            if pattern.search(parts[1]):
                target = next((lib for lib in needed if lib.startswith(stem + ".so")), default)
                break
        symbols[target].append(parts[1])
    os.makedirs(folder, exist_ok=True)
    for lib, names in symbols.items():
        source = os.path.join(folder, lib + ".c")
        with open(source, "w") as handle:
            handle.write("/* stub of {}: every function returns 0/NULL */\n".format(lib))
            for name in names:
                handle.write("void *{}(void) {{ return 0; }}\n".format(name))
        _run(["gcc", "-shared", "-fPIC", "-o", os.path.join(folder, lib),
              "-Wl,-soname," + lib, source])
    return dict(symbols)


def live_surface(wheel: Wheel, workdir: str, wheel_folder: Optional[str] = None) -> Dict[str, Any]:
    """Downloads (or reuses) ``wheel``, imports it against stubs, and describes it.

    Args:
        wheel: Which bindings wheel.
        workdir: An empty scratch folder (the extracted wheel and the stubs go there).
        wheel_folder: Download cache; :func:`cache_dir` by default.

    Raises:
        Unavailable: The wheel cannot be had or the stubs cannot be built here.
    """
    path = fetch_wheel(wheel, wheel_folder)
    site = os.path.join(workdir, "site")
    with zipfile.ZipFile(path) as archive:
        archive.extractall(site)
    extensions = glob.glob(os.path.join(site, "tensorrt_bindings", "tensorrt*.so"))
    if not extensions:
        raise Unavailable("{} holds no tensorrt_bindings/tensorrt*.so".format(path))
    stubs = build_stubs(extensions[0], os.path.join(workdir, "stubs"))
    env = dict(os.environ, LD_LIBRARY_PATH=os.path.join(workdir, "stubs"), PYTHONPATH=site,
               PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "describe"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)
    if done.returncode != 0:
        # The stubs were built: an import failure now is a finding, not an unavailability.
        raise RuntimeError("importing {} against stubs failed:\n{}".format(
            os.path.basename(path), done.stderr[-3000:]))
    surface = json.loads(done.stdout)
    surface["source"] = OrderedDict([
        ("from", "PyPI wheel, imported against stub libraries"),
        ("package", wheel.package), ("version", wheel.version),
        ("wheel", os.path.basename(path)), ("python", "{}.{}".format(*sys.version_info[:2])),
        ("stubbed_symbols", stubs),
        ("regenerate", "python3 tests/engines/trt_api.py dump {}".format(wheel.version)),
        ("meaning", "names and signatures of the real API only, never its behaviour")])
    return surface


def comparable(surface: Dict[str, Any]) -> Dict[str, Any]:
    """The parts of a surface that must be equal between a live read and the committed file."""
    return {key: surface[key] for key in ("version", "classes", "enums", "functions",
                                          "constants")}


def differences(committed: Dict[str, Any], live: Dict[str, Any], limit: int = 40) -> List[str]:
    """Human-readable differences between two surfaces, at most ``limit`` lines."""
    lines = []  # type: List[str]

    def walk(a: Any, b: Any, where: str) -> None:
        if len(lines) >= limit:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if key not in b:
                    lines.append("{}{}: committed only".format(where, key))
                elif key not in a:
                    lines.append("{}{}: live only".format(where, key))
                else:
                    walk(a[key], b[key], "{}{}.".format(where, key))
        elif a != b:
            lines.append("{}: committed {!r}, live {!r}".format(where.rstrip("."), a, b))

    walk(comparable(committed), comparable(live), "")
    return lines


def write_surface(surface: Dict[str, Any], path: str) -> None:
    """Writes a surface file: sorted keys, one-space indent (diff-friendly)."""
    with open(path, "w") as handle:
        json.dump(surface, handle, indent=1, sort_keys=True)
        handle.write("\n")


# ---------------------------------------------------------------------------------------------
# Reading NVIDIA/TensorRT's pybind11 sources (8.2.1: no wheel)

_DECLARATION = re.compile(r"py::(class_|enum_)<")
_MEMBER = re.compile(r"\.(def|def_property|def_property_readonly|def_static|def_readwrite|"
                     r"def_readonly|value)\(\s*\"(\w+)\"")
_INIT = re.compile(r"\.def\(\s*py::init")
_ARG = re.compile(r"\"(\w+)\"_a(\s*=)?|py::arg\(\"(\w+)\"\)(\s*=)?")
_BINDING_VARIABLE = re.compile(r"py::class_<([^;{]*?)>\s+(\w+)\s*[({]\s*\w+\s*,\s*\"(\w+)\"")
_DATATYPE_CONSTANTS = {"float32": "FLOAT", "float16": "HALF", "int8": "INT8", "int32": "INT32",
                       "bool": "BOOL", "uint8": "UINT8"}


def _closing(text: str, start: int, opening: str, closing: str) -> int:
    """Index just past the bracket closing ``text[start]`` (== ``opening``), strings skipped."""
    depth, in_string, i = 0, False, start
    while i < len(text):
        char = text[i]
        if in_string:
            if char == "\\":
                i += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return len(text)


def _template_args(text: str) -> List[str]:
    args, depth, current = [], 0, ""
    for char in text:
        if char == "<":
            depth += 1
        elif char == ">":
            depth -= 1
        if char == "," and depth == 0:
            args.append(current.strip())
            current = ""
        else:
            current += char
    args.append(current.strip())
    return args


def _parse_source(text: str, surface: Dict[str, Any], cpp_names: Dict[str, str],
                  cpp_bases: Dict[str, List[str]]) -> None:
    variables = {m.group(2): m.group(3) for m in _BINDING_VARIABLE.finditer(text)}
    events = []
    for match in _DECLARATION.finditer(text):
        end = _closing(text, match.end() - 1, "<", ">")
        template = _template_args(text[match.end():end - 1])
        head = re.match(r"\s*(\w+\s*)?[({]\s*(\w+)\s*,\s*\"(\w+)\"", text[end:end + 300])
        if head:
            events.append((match.start(), match.group(1), head.group(3), head.group(2), template))
    for match in _MEMBER.finditer(text):
        if re.search(r"\b(m|module)\s*$", text[max(0, match.start() - 20):match.start()]):
            if match.group(1) == "def":  # a module-level function
                surface["functions"].setdefault(match.group(2), {"signatures": []})
            continue
        events.append((match.start(), "member", match.group(2), match.group(1), match.end()))
    for match in _INIT.finditer(text):
        events.append((match.start(), "member", "__init__", "def", match.end()))
    events.sort(key=lambda event: event[0])
    current = None  # type: Optional[Tuple[str, str, Optional[str]]]
    for event in events:
        if event[1] in ("class_", "enum_"):
            name, scope, template = event[2], event[3], event[4]
            owner = variables.get(scope) if scope not in ("m", "module") else None
            if event[1] == "enum_":
                current = ("enum", name, owner)
                if owner is None:
                    surface["enums"].setdefault(name, OrderedDict())
                else:
                    surface["classes"].setdefault(owner, {"bases": [], "members": {}})
                    surface["classes"][owner]["members"][name] = {"kind": "enum",
                                                                  "members": OrderedDict()}
            else:
                current = ("class", name, None)
                surface["classes"].setdefault(name, {"bases": [], "members": {}})
                cpp_names[template[0]] = name
                cpp_bases[name] = template[1:]
            continue
        if current is None:
            continue
        name, how, start = event[2], event[3], event[4]
        call_end = _closing(text, text.rfind("(", 0, start), "(", ")")
        call = text[start:call_end]
        if current[0] == "enum":
            if how == "value":
                members = (surface["enums"][current[1]] if current[2] is None else
                           surface["classes"][current[2]]["members"][current[1]]["members"])
                members[name] = len(members)
                if current[2] is not None and ".export_values()" in text[call_end:call_end + 400]:
                    surface["classes"][current[2]]["members"].setdefault(
                        name, {"kind": "attribute", "value": "{}.{}".format(current[1], name)})
            continue
        if how == "value" or (name.startswith("__") and name not in KEPT_DUNDERS):
            continue
        members = surface["classes"][current[1]]["members"]
        if how in ("def_property", "def_readwrite"):
            info = {"kind": "property", "readonly": False}  # type: Dict[str, Any]
        elif how in ("def_property_readonly", "def_readonly"):
            info = {"kind": "property", "readonly": True}
        else:
            args = ["{}{}".format(a or c, "=..." if (b or d) else "")
                    for a, b, c, d in _ARG.findall(call)]
            # No named argument: none (py::init<>()) or unnamed ones ("?": unknown).
            known = bool(args) or (name == "__init__" and text[start:].lstrip().startswith("<>"))
            signature = "{}({})".format(name, ", ".join(args) if known else "?")
            info = {"kind": "staticmethod" if how == "def_static" else "method",
                    "signatures": [signature]}
        previous = members.get(name)
        if previous and previous.get("signatures") and info.get("signatures"):
            previous["signatures"].extend(s for s in info["signatures"]
                                          if s not in previous["signatures"])
        else:
            members[name] = info


def _inherit(surface: Dict[str, Any], cpp_names: Dict[str, str],
             cpp_bases: Dict[str, List[str]]) -> None:
    """Adds each class's bases (from the class_<T, Base, ...> template) and their members."""
    classes = surface["classes"]
    direct = {name: [cpp_names[t] for t in cpp_bases.get(name, []) if t in cpp_names]
              for name in classes}

    def lineage(name: str) -> List[str]:
        order = []
        for base in direct.get(name, []):
            for ancestor in [base] + lineage(base):
                if ancestor not in order:
                    order.append(ancestor)
        return order

    for name, cls in classes.items():
        cls["bases"] = lineage(name)
    for name, cls in classes.items():
        for base in cls["bases"]:
            for member, info in classes.get(base, {"members": {}})["members"].items():
                cls["members"].setdefault(member, info)


def surface_from_source(git_dir: str, ref: str, version: str) -> Dict[str, Any]:
    """The approximate surface of TensorRT ``version`` from a NVIDIA/TensorRT clone at ``ref``."""

    def show(path: str) -> str:
        return _run(["git", "--git-dir", git_dir, "show", "{}:{}".format(ref, path)])

    commit = _run(["git", "--git-dir", git_dir, "rev-parse", ref + "^{commit}"]).strip()
    files = [p for p in _run(["git", "--git-dir", git_dir, "ls-tree", "-r", "--name-only", ref,
                              "python/src"]).splitlines() if p.endswith(".cpp")]
    surface = {"version": version, "classes": {}, "enums": {}, "functions": {},
               "constants": {}}  # type: Dict[str, Any]
    cpp_names, cpp_bases = {}, {}  # type: Dict[str, str], Dict[str, List[str]]
    for path in sorted(files):
        _parse_source(show(path), surface, cpp_names, cpp_bases)
    init_path = next(p for p in ("python/packaging/tensorrt/__init__.py",
                                 "python/packaging/bindings_wheel/tensorrt/__init__.py")
                     if _run(["git", "--git-dir", git_dir, "ls-tree", "--name-only", ref, p]))
    init = show(init_path)
    for owner, dunder in re.findall(r"^(\w+)\.(__enter__|__exit__)\s*=", init, re.M):
        if owner in surface["classes"]:
            surface["classes"][owner]["members"][dunder] = {"kind": "method",
                                                            "signatures": [dunder + "(?)"]}
    for cls in surface["classes"].values():  # pybind11 gives every class an __init__
        cls["members"].setdefault("__init__", {"kind": "method", "signatures": []})
    _inherit(surface, cpp_names, cpp_bases)
    for match in re.finditer(r"^def (\w+)\((.*?)\):", init, re.M):
        if not match.group(1).startswith("_"):
            params = [p.strip().replace(" ", "") for p in match.group(2).split(",") if p.strip()]
            surface["functions"][match.group(1)] = {"signatures": ["{}({})".format(
                match.group(1), ", ".join(p.split("=")[0] + ("=..." if "=" in p else "")
                                          for p in params))]}
    for constant, member in _DATATYPE_CONSTANTS.items():
        if re.search(r"^{}\s*=".format(constant), init, re.M) or \
                re.search(r"\b{}: np\.".format(constant), init):
            surface["constants"][constant] = "DataType.{}".format(member)
    surface["source"] = OrderedDict([
        ("from", "NVIDIA/TensorRT pybind11 sources (approximate: names, kinds, argument names "
                 "and which have defaults; no types; enum values are the declaration order)"),
        ("repository", "https://github.com/NVIDIA/TensorRT"), ("ref", ref), ("commit", commit),
        ("files", sorted(files) + [init_path]),
        ("regenerate", "python3 tests/engines/trt_api.py from-source NVIDIA-TensorRT/.git {} "
                       "{}".format(ref, version)),
        ("meaning", "names and signatures of the real API only, never its behaviour")])
    for cls in surface["classes"].values():
        cls["members"] = dict(sorted(cls["members"].items()))
    surface["enums"] = {name: dict(members) for name, members in surface["enums"].items()}
    return surface


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``describe`` (in the child interpreter), ``dump VERSION...``, ``from-source``."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    commands.add_parser("describe", help="print the surface of tensorrt_bindings as JSON")
    dump = commands.add_parser("dump", help="(re)write committed surfaces from the wheels")
    dump.add_argument("versions", nargs="*", metavar="VERSION",
                      help="of {} (default: all)".format(", ".join(WHEELS)))
    dump.add_argument("--out", default=SURFACE_DIR)
    source = commands.add_parser("from-source", help="write a surface from NVIDIA's sources")
    source.add_argument("git_dir", help="a NVIDIA/TensorRT clone (its .git folder or a bare one)")
    source.add_argument("ref", help="tag or commit, e.g. 8.2.1")
    source.add_argument("version", help="the version to name it, e.g. 8.2.1")
    source.add_argument("--out", default=SURFACE_DIR)
    args = parser.parse_args(argv)
    if args.command == "describe":
        import importlib

        json.dump(describe(importlib.import_module("tensorrt_bindings")), sys.stdout)
        return 0
    if args.command == "dump":
        for version in args.versions or list(WHEELS):
            if version not in WHEELS:
                parser.error("no wheel is known for {!r}; known: {}".format(
                    version, ", ".join(WHEELS)))
            work = tempfile.mkdtemp(prefix="cvnet-trt-api-")
            try:
                surface = live_surface(WHEELS[version], work)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            write_surface(surface, os.path.join(args.out, "surface-{}.json".format(version)))
            print("{}: {} classes, {} enums".format(version, len(surface["classes"]),
                                                    len(surface["enums"])))
        return 0
    git_dir = args.git_dir
    if os.path.isdir(os.path.join(git_dir, ".git")):
        git_dir = os.path.join(git_dir, ".git")
    surface = surface_from_source(git_dir, args.ref, args.version)
    write_surface(surface, os.path.join(args.out, "surface-{}.json".format(args.version)))
    print("{}: {} classes, {} enums".format(args.version, len(surface["classes"]),
                                            len(surface["enums"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
