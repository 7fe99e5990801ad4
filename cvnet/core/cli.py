"""The command-line glossary every cvnet command shares, its ``--help`` layout and its logging.

One spelling per meaning, across all commands (docs/cli.md is the table):

- ``--input-size HxW`` or one integer: the model's input size (was ``--imgsz``, ``--img-size``);
- ``-o/--output``: what the command writes (was ``--out``);
- ``--json-out FILE`` writes JSON; ``--json`` prints it instead of the human output;
- ``--precision fp32|fp16|bf16|int8|auto`` where a command chooses precision (was ``--half``,
  ``--fp32``, ``--int8``); ``auto``: the command or backend decides, as its help says;
- ``--backend NAME``: the runtime that runs a model file, where more than one can (``openvino``
  for an ``.onnx`` file; ``cvnet-bench`` takes several, comma-separated);
- ``--engine MODEL``: always a model file (cvnet-export's build switch is ``--build-engine``);
- ``--verify-images N`` and ``--no-verify``: the parity check of cvnet-export and cvnet-build;
- ``--batch-size N``: images per call at run time; ``--batch``: the batch a model is exported,
  built or timed with;
- ``--fpr F``: a target false-positive rate of an operating point (a comma-separated list where a
  command reports several);
- ``--threads N``, ``--device``, ``--seed N``, ``-v/--verbose``;
- exit status 0 ok, 1 error (any refused input or failure), 2 usage (argparse), 3 partial failure
  (cvnet-embed: some files failed; training: stopped at a non-finite loss; gpu-check: a step
  failed).

Old spellings stay for one release as hidden aliases (:func:`add_alias`) that log a deprecation
warning naming the new spelling. :func:`setup_logging` is the one logging set-up of every
command.

Descriptions come from module docstrings, which are reStructuredText (````cvnet-eval````,
``:func:`x```); :class:`HelpFormatter` prints them as plain text, wraps lines without splitting
hyphenated names (``cvnet-export``, ``index-NNNNN.csv``), keeps the blank lines between
paragraphs (an indented block, such as examples, line by line), and appends ``(default: X)`` to
an option's help only when X is a real default that the help does not already state (never
``None``, ``False`` or a flag's implicit value). Every command builds its parser with
:class:`ArgumentParser`, whose subparsers inherit the formatter. Device-side: standard library
only, Python 3.6.
"""

import argparse
import logging
import re
import textwrap
from typing import Any, Callable, Optional, Sequence, Tuple

from cvnet.core.runtimes import RUNTIME_SUFFIXES

logger = logging.getLogger(__name__)

#: Exit statuses of every command, one name each (docs/cli.md): done, an error (refused input or a
#: failure), a bad command line (argparse), a partial failure (cvnet-embed: some files failed;
#: the training commands: the run diverged; cvnet-gpu-check: a step failed).
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
#: Precisions a command may offer with ``--precision``; ``auto`` lets the command (or the
#: backend: OpenVINO's choice on this CPU) decide.
PRECISIONS = ("fp32", "fp16", "bf16", "int8", "auto")
#: Runtimes ``--backend`` may name (:data:`cvnet.core.runtimes.RUNTIME_SUFFIXES`): ``torch``
#: (CUDA graphs on a GPU), ``torch-eager``, ONNX Runtime, OpenVINO (x86 CPUs, ``.onnx`` files)
#: and TensorRT.
BACKENDS = tuple(RUNTIME_SUFFIXES)
_LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")  # :func:`cvnet.engines.open_engine` -> its text
_LITERAL = re.compile(r"``([^`]+)``")  # ``cvnet-eval`` -> cvnet-eval
_LITERAL_BLOCK = re.compile(r"::$", re.MULTILINE)  # "Examples::" -> "Examples:"
_PARAGRAPHS = re.compile(r"\n\s*\n")
#: A help text that states its default itself ("(default 10)", "default: print it", "%(default)s").
_STATES_DEFAULT = re.compile(r"\(default\b|\bdefault:|%\(default\)", re.IGNORECASE)


def plain_text(text: str) -> str:
    """reStructuredText inline markup removed: roles and literals keep their text only."""
    return _LITERAL_BLOCK.sub(":", _LITERAL.sub(r"\1", _ROLE.sub(r"\1", text)))


def doc_summary(doc: str) -> str:
    """The first paragraph of a module docstring, as plain text (a parser's description)."""
    return plain_text(_PARAGRAPHS.split(doc.strip(), 1)[0]).strip()


def _worth_showing(action: argparse.Action) -> bool:
    """Whether an option's default says something: not None, empty, a flag's or SUPPRESS."""
    default = action.default
    if default is None or default is argparse.SUPPRESS or isinstance(default, bool):
        return False
    if isinstance(default, (str, list, tuple, dict)) and not default:
        return False
    return bool(action.option_strings) and action.nargs != 0


def _shown_default(value) -> str:
    """A default as a user would type it: ``1,8`` for a list, the value itself otherwise."""
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, with plain-text help and only the defaults worth showing.

    Pass it as ``formatter_class`` to every parser and subparser of a cvnet command.
    """

    def _split_lines(self, text, width):
        text = " ".join(plain_text(text).split())
        return textwrap.wrap(text, width, break_on_hyphens=False)

    def _fill_text(self, text, width, indent):
        blocks = []
        for part in _PARAGRAPHS.split(text.strip("\n")):
            if part[:1].isspace():  # an indented block (examples): line by line, as written
                blocks.append("\n".join(indent + line for line in plain_text(part).splitlines()))
            elif part.strip():
                blocks.append(textwrap.fill(" ".join(plain_text(part).split()), width,
                                            initial_indent=indent, subsequent_indent=indent,
                                            break_on_hyphens=False))
        return "\n\n".join(blocks)

    def _get_help_string(self, action):
        text = action.help or ""
        if _STATES_DEFAULT.search(text) or not _worth_showing(action):
            return text
        return "{} (default: {})".format(text, _shown_default(action.default).replace("%", "%%"))


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` with :class:`HelpFormatter`; its subparsers inherit both.

    It also enforces the options that are required but have a deprecated alias (argparse's own
    ``required`` would not count the alias): :func:`add_output` registers them, and the usage
    line shows them as required (no brackets), as argparse shows its own required options.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.required_with_aliases = []  # type: list

    def parse_known_args(self, args=None, namespace=None):
        """argparse's parsing, then the required options that have aliases (usage error 2).

        Deprecation warnings of old spellings are logged here when logging is already set up,
        else by :func:`setup_logging`, which every command calls after parsing: logged before,
        they would bypass the command's log format (Python's last-resort handler prints the bare
        message).
        """
        namespace, extras = super().parse_known_args(args, namespace)
        missing = [shown for dest, shown, _ in self.required_with_aliases
                   if getattr(namespace, dest, None) is None]
        if missing:
            self.error("the following arguments are required: {}".format(", ".join(missing)))
        if logging.getLogger().handlers:
            _log_deprecations()
        return namespace, extras

    def _formatted(self, format_text: Callable[[], str]) -> str:
        """``format_text()`` with the options :func:`add_output` checks itself shown as required."""
        actions = [action for _, _, action in self.required_with_aliases]
        for action in actions:
            action.required = True
        try:
            return format_text()
        finally:
            for action in actions:
                action.required = False

    def format_usage(self) -> str:
        """The usage line; required options with aliases without brackets."""
        return self._formatted(super().format_usage)

    def format_help(self) -> str:
        """The help; required options with aliases without brackets in its usage line."""
        return self._formatted(super().format_help)


# ---------------------------------------------------------------------------------- logging


def setup_logging(verbose: bool = False, *, timestamps: bool = False, quiet: bool = False) -> None:
    """Configures logging for a command, once: INFO (DEBUG with ``verbose``) to standard error.

    Args:
        verbose: Debug messages too (``-v/--verbose``).
        timestamps: Prefix every line with the time (long runs: training, gpu-check).
        quiet: Warnings and errors only (e.g. ranks other than 0 of a distributed run).
    """
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level,
                        format=("%(asctime)s " if timestamps else "") + _LOG_FORMAT)
    _log_deprecations()


#: Deprecation warnings of the old spellings parsed before logging was set up: (format, args).
_PENDING_DEPRECATIONS = []  # type: list


def _log_deprecations() -> None:
    """Logs (once) the deprecation warnings :class:`DeprecatedAlias` held back."""
    while _PENDING_DEPRECATIONS:
        message, args = _PENDING_DEPRECATIONS.pop(0)
        logger.warning(message, *args)


# ---------------------------------------------------------------------------------- values


def input_size(text: str) -> Tuple[int, int]:
    """``"256"`` -> (256, 256), ``"256x128"`` -> (256, 128): ``--input-size``'s value, pixels."""
    parts = str(text).lower().split("x")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise argparse.ArgumentTypeError("expected HxW or one size in pixels, e.g. 256x128 or "
                                         "256, got {!r}".format(text))
    return values[0], values[-1]


def square_size(text: str) -> int:
    """``--input-size`` of a command that takes square inputs only: one integer (or NxN)."""
    height, width = input_size(text)
    if height != width:
        raise argparse.ArgumentTypeError("this command takes square inputs: give one size, "
                                         "e.g. 256, got {!r}".format(text))
    return height


def _whole_number(text: str, minimum: int) -> int:
    """``text`` as an int of at least ``minimum``, or argparse's error saying so."""
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError("expected a whole number >= {}, got {!r}".format(
            minimum, text))
    return value


def positive_int(text: str) -> int:
    """A count of at least 1 (``--threads``, ``--batch-size``)."""
    return _whole_number(text, 1)


def count(text: str) -> int:
    """A count of at least 0 (``--verify-images``)."""
    return _whole_number(text, 0)


def fpr_value(text: str) -> float:
    """A false-positive rate strictly between 0 and 1 (``--fpr 1e-3``)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError("expected a false-positive rate in (0, 1) such as 1e-3, "
                                         "got {!r}".format(text))
    return value


def fpr_list(text: str) -> Tuple[float, ...]:
    """Comma-separated false-positive rates (``--fpr 1e-2,1e-3,1e-4``), sorted descending."""
    values = [fpr_value(part.strip()) for part in str(text).split(",") if part.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected rates such as 1e-2,1e-3, got {!r}".format(text))
    return tuple(sorted(set(values), reverse=True))


def cuda_device(text: str) -> int:
    """A GPU: ``cuda:N``, ``cuda`` (GPU 0) or ``N`` -> the CUDA device ordinal."""
    value = str(text).lower()
    if value == "cuda":
        return 0
    number = value[len("cuda:"):] if value.startswith("cuda:") else value
    if not number.isdigit():
        raise argparse.ArgumentTypeError("expected a GPU as cuda:N (or N), e.g. cuda:0, got "
                                         "{!r}".format(text))
    return int(number)


# ---------------------------------------------------------------------------------- aliases

#: ``add_alias(..., value=TAKES_VALUE)``: the old option takes a value, like the new one.
TAKES_VALUE = object()


class DeprecatedAlias(argparse.Action):
    """An old spelling kept for one release: hidden, sets the new option, warns with its name.

    Args:
        new: The new spelling, shown in the warning (``--input-size``, ``--precision fp16``).
        value: The constant the old flag stands for, or :data:`TAKES_VALUE` when the old option
            takes a value as the new one does.
    """

    def __init__(self, option_strings, dest, new: str = "", value: Any = TAKES_VALUE,
                 type: Optional[Callable[[str], Any]] = None, **kwargs):
        takes_value = value is TAKES_VALUE
        super(DeprecatedAlias, self).__init__(
            option_strings, dest, nargs=None if takes_value else 0, type=type,
            const=None if takes_value else value, default=argparse.SUPPRESS,
            help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        # Held until logging is set up (ArgumentParser.parse_known_args, setup_logging).
        _PENDING_DEPRECATIONS.append(("%s is deprecated and will be removed in the next release: "
                                      "use %s", (option_string, self.new)))
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_alias(parser: argparse.ArgumentParser, old: str, *, dest: str, new: str,
              value: Any = TAKES_VALUE, type: Optional[Callable[[str], Any]] = None,
              metavar: Optional[str] = None) -> None:
    """Keeps ``old`` working as a hidden, deprecated spelling of the option whose dest is
    ``dest``.

    Args:
        parser: The command's parser (or group).
        old: The old option string, e.g. ``"--imgsz"``.
        dest: The new option's dest; the old one stores there.
        new: The new spelling for the warning, e.g. ``"--input-size"`` or ``"--precision fp16"``.
        value: What a flag alias stands for (``"fp16"`` for ``--half``); by default the old
            option takes a value, converted by ``type``.
        type: Converts an old option's value (the new option's type, for the same result).
        metavar: For messages about a bad value.
    """
    parser.add_argument(old, action=DeprecatedAlias, dest=dest, new=new, value=value, type=type,
                        metavar=metavar)


# ---------------------------------------------------------------------------------- options


def _aliases(parser: argparse.ArgumentParser, olds: Sequence[str], dest: str, new: str,
             type: Optional[Callable[[str], Any]] = None) -> None:
    for old in olds:
        add_alias(parser, old, dest=dest, new=new, type=type)


def add_input_size(parser: argparse.ArgumentParser, *, help: str,
                   default: Optional[Tuple[int, int]] = None, square: bool = False,
                   dest: str = "input_size", aliases: Sequence[str] = ()) -> None:
    """``--input-size HxW`` (or one integer for a square size): the model input, pixels.

    Args:
        parser: The parser.
        help: What the size is for.
        default: (height, width), stated in the help as HxW; None when the command decides.
        square: The command takes square inputs only: the value is one int (``NxN`` allowed).
        dest: Where the value goes (a config field, for the training commands).
        aliases: Old spellings kept hidden for one release (``--imgsz``).
    """
    kind = square_size if square else input_size
    if default is not None:
        help = "{} (default: {}x{})".format(help, default[0], default[1])
        default = default[0] if square else tuple(default)
    parser.add_argument("--input-size", type=kind, default=default, dest=dest, metavar="HxW",
                        help=help)
    _aliases(parser, aliases, dest, "--input-size", kind)


def add_output(parser: argparse.ArgumentParser, *, help: str, default: Optional[str] = None,
               required: bool = False, metavar: Optional[str] = None,
               aliases: Sequence[str] = ()) -> None:
    """``-o/--output``: the file or folder the command writes.

    A required output with aliases is checked by :class:`ArgumentParser` after parsing, so that
    the old spelling counts.
    """
    check_later = required and bool(aliases)
    if check_later:
        help += " (required)"
    action = parser.add_argument("-o", "--output", default=default,
                                 required=required and not check_later, metavar=metavar,
                                 help=help)
    if check_later:
        parser.required_with_aliases.append(("output", "-o/--output", action))
    _aliases(parser, aliases, "output", "-o/--output")


def add_json_out(parser: argparse.ArgumentParser, *, help: str,
                 aliases: Sequence[str] = ()) -> None:
    """``--json-out FILE``: also write the result as JSON, atomically."""
    parser.add_argument("--json-out", metavar="FILE", help=help)
    _aliases(parser, aliases, "json_out", "--json-out")


def add_json_print(parser: argparse.ArgumentParser, *, help: str) -> None:
    """``--json``: print JSON instead of the human-readable result."""
    parser.add_argument("--json", action="store_true", help=help)


def backend_list(text: str) -> Tuple[str, ...]:
    """``"onnxruntime,openvino"`` -> ("onnxruntime", "openvino"): several ``--backend`` names."""
    values = tuple(dict.fromkeys(part.strip() for part in str(text).split(",") if part.strip()))
    unknown = [value for value in values if value not in BACKENDS]
    if not values or unknown:
        raise argparse.ArgumentTypeError("unknown backend {}; expected {} (comma-separated for "
                                         "several)".format(", ".join(unknown) or repr(text),
                                                           "|".join(BACKENDS)))
    return values


def add_backend(parser: argparse.ArgumentParser, *, choices: Sequence[str], help: str,
                several: bool = False) -> None:
    """``--backend NAME``: the runtime that runs the model file (default: its suffix's).

    Args:
        choices: The names of :data:`BACKENDS` the command offers.
        several: Take a comma-separated list (cvnet-bench); the value is then a tuple.
    """
    unknown = [choice for choice in choices if choice not in BACKENDS]
    if unknown:
        raise ValueError("backends must come from {}; got {}".format(BACKENDS, choices))
    if several:
        parser.add_argument("--backend", type=backend_list, metavar="|".join(choices), help=help)
    else:
        parser.add_argument("--backend", choices=tuple(choices), help=help)


def add_onnx_runtime(parser: argparse.ArgumentParser, *, others: str = "") -> None:
    """``--backend onnxruntime|openvino`` and ``--precision fp32|bf16|auto``: the runtime of an
    ``.onnx`` file and OpenVINO's precision (cvnet-eval, cvnet-embed; docs/cpu.md).

    Args:
        others: What the other runtimes do with ``--precision``, appended to its help.
    """
    add_backend(parser, choices=("onnxruntime", "openvino"),
                help="runtime of an .onnx file (default: onnxruntime); openvino needs "
                     "cvnet[openvino] (docs/cpu.md)")
    add_precision(parser, choices=("fp32", "bf16", "auto"), default="auto",
                  help="OpenVINO's precision: auto is OpenVINO's choice on this CPU (bf16 on "
                       "AVX512-BF16 CPUs), used only where the export's agreement check passed "
                       "for it, else fp32" + others)


def add_precision(parser: argparse.ArgumentParser, *, choices: Sequence[str], default: str,
                  help: str, aliases: Optional[dict] = None) -> None:
    """``--precision {fp32,fp16,bf16,int8,auto}`` (the ones the command offers).

    Args:
        aliases: Old flags and the precision each stood for, e.g. ``{"--half": "fp16"}``.
    """
    unknown = [choice for choice in choices if choice not in PRECISIONS]
    if unknown or default not in choices:
        raise ValueError("precisions must come from {}, default among them; got {} / "
                         "{}".format(PRECISIONS, choices, default))
    parser.add_argument("--precision", choices=tuple(choices), default=default, help=help)
    for old, value in sorted((aliases or {}).items()):
        add_alias(parser, old, dest="precision", new="--precision " + value, value=value)


def add_engine(parser: argparse.ArgumentParser, *, help: str, required: bool = False) -> None:
    """``--engine MODEL``: a model file (.plan/.engine, .onnx or .pt)."""
    parser.add_argument("--engine", metavar="MODEL", required=required, help=help)


def add_verification(parser: argparse.ArgumentParser, *, default: int, images_help: str,
                     skip_help: str, aliases: Sequence[str] = ()) -> None:
    """``--verify-images N`` and ``--no-verify``: the parity check after a conversion."""
    parser.add_argument("--verify-images", type=count, default=default, metavar="N",
                        help=images_help)
    parser.add_argument("--no-verify", dest="verify", action="store_false", help=skip_help)
    _aliases(parser, aliases, "verify_images", "--verify-images", count)


def add_batch_size(parser: argparse.ArgumentParser, *, help: str, default: Optional[int] = None,
                   dest: str = "batch_size", aliases: Sequence[str] = ()) -> None:
    """``--batch-size N``: images per call at run time."""
    parser.add_argument("--batch-size", type=positive_int, default=default, dest=dest,
                        metavar="N", help=help)
    _aliases(parser, aliases, dest, "--batch-size", positive_int)


def add_threads(parser: argparse.ArgumentParser, *, help: str) -> None:
    """``--threads N``: CPU threads of the backend (default: the backend's own choice)."""
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N", help=help)


def device_choice(choices: Sequence[str]) -> Callable[[str], str]:
    """An argparse type: one of ``choices`` or, where they hold ``cuda``, ``cuda:N`` (a GPU
    other than the first); the value is lower-cased, ``cuda:N`` kept as text for the runner
    (:func:`cvnet.engines.gpu.device_ordinal` reads it)."""
    allowed = tuple(choices)

    def parse(text: str) -> str:
        value = str(text).strip().lower()
        if value in allowed:
            return value
        if "cuda" in allowed and value.startswith("cuda:") and value[5:].isdigit():
            return "cuda:{}".format(int(value[5:]))
        raise argparse.ArgumentTypeError("expected {}{}, got {!r}".format(
            ", ".join(allowed), " or cuda:N (a GPU number)" if "cuda" in allowed else "", text))

    parse.__name__ = "device"  # argparse names the type in its error messages
    parse.choices = allowed  # type: ignore  # for the glossary check
    return parse


def add_device(parser: argparse.ArgumentParser, *, help: str,
               choices: Optional[Sequence[str]] = None, default: Any = None,
               gpu: bool = False, ordinals: bool = False) -> None:
    """``--device``: where to run (``cpu``, ``cuda``, ``auto``...); ``gpu``: a GPU, ``cuda:N``.

    Args:
        ordinals: Accept ``cuda:N`` besides ``choices`` (which must hold ``cuda``), for a command
            whose device option is read by :func:`cvnet.engines.gpu.device_ordinal`.
    """
    if gpu:
        parser.add_argument("--device", type=cuda_device, default=default, metavar="cuda:N",
                            help=help)
    elif ordinals:
        choices = tuple(choices or ())
        parser.add_argument("--device", type=device_choice(choices), default=default,
                            metavar="{{{}}}".format(",".join(choices + ("cuda:N",))), help=help)
    else:
        parser.add_argument("--device", choices=tuple(choices or ()), default=default, help=help)


def add_seed(parser: argparse.ArgumentParser, *, help: str, default: Optional[int] = 0) -> None:
    """``--seed N``: the seed that makes a run repeatable."""
    parser.add_argument("--seed", type=int, default=default, metavar="N", help=help)


def add_fpr(parser: argparse.ArgumentParser, *, help: str, several: bool = False,
            default: Any = None) -> None:
    """``--fpr F`` (or ``F,F,...`` where ``several``): target false-positive rates of operating
    points."""
    parser.add_argument("--fpr", type=fpr_list if several else fpr_value, default=default,
                        metavar="F,F,..." if several else "F", help=help)


def add_verbose(parser: argparse.ArgumentParser, help: str = "debug messages too") -> None:
    """``-v/--verbose``."""
    parser.add_argument("-v", "--verbose", action="store_true", help=help)
