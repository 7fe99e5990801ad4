"""One command-line glossary across every command (docs/cli.md).

All parsers are built (the 12 console commands and the ``python3 -m`` subcommands), and every
option the glossary names is checked wherever it appears: spelling, metavar, type, choices and
default. Old spellings must not show in any ``--help``, and each still parses to the same value
as its new spelling, with a deprecation warning that names the new one.
"""

import argparse
import importlib
import logging
import os
import sys

import pytest

from cvnet.core import cli
from tests.device_modules import ROOT

if sys.version_info < (3, 9):  # the host commands' modules do not import on the device's 3.6
    pytest.skip("the glossary is checked with the host's Python (>= 3.9), where every command's "
                "parser builds", allow_module_level=True)

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = pytest.importorskip("tomli")

#: Console command -> (module, function returning its parser).
PARSERS = {
    "cvnet-summary": ("cvnet.models.summary_cli", "build_parser"),
    "cvnet-export": ("cvnet.export.cli", "build_parser"),
    "cvnet-synth": ("cvnet.core.synth.cli", "build_parser"),
    "cvnet-train": ("cvnet.training.cli", "build_parser"),
    "cvnet-search": ("cvnet.search.cli", "build_parser"),
    "cvnet-compare-ops": ("cvnet.search.compare", "build_parser"),
    "cvnet-eval": ("cvnet.jetson.eval_cli", "build_parser"),
    "cvnet-build": ("cvnet.engines.cli", "build_only_parser"),
    "cvnet-embed": ("cvnet.jetson.cli", "embed_parser"),
    "cvnet-match": ("cvnet.jetson.cli", "match_parser"),
    "cvnet-bench": ("cvnet.benchmarks.cli", "build_parser"),
    "cvnet-gpu-check": ("cvnet.gpucheck.cli", "build_parser"),
    "python3 -m cvnet.jetson": ("cvnet.jetson.cli", "build_parser"),
    "python3 -m cvnet.engines": ("cvnet.engines.cli", "build_parser"),
}
#: Spellings the glossary replaced; none may show in a --help.
OLD_SPELLINGS = ("--imgsz", "--img-size", "--out", "--half", "--fp32", "--int8", "--verify")


def _parser(command):
    module, function = PARSERS[command]
    return getattr(importlib.import_module(module), function)()


def _all_parsers():
    """(name, parser) of every command and subcommand (a subcommand handed to another command,
    whose parser is a placeholder without options, is checked as that command)."""
    found = []
    for command in PARSERS:
        parser = _parser(command)
        found.append((command, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                found += [("{} {}".format(command, name), sub)
                          for name, sub in sorted(action.choices.items()) if sub.add_help]
    return found


ALL = _all_parsers()


def _visible(parser):
    """option string -> action, for every option its --help shows."""
    return {option: action for action in parser._actions if action.help != argparse.SUPPRESS
            for option in action.option_strings}


def _glossary_problems(parser):
    """Every way an option of ``parser`` differs from the glossary."""
    options = _visible(parser)
    problems = []

    def expect(option, condition, what):
        if option in options and not condition(options[option]):
            problems.append("{}: {}".format(option, what))

    expect("--input-size", lambda a: a.metavar == "HxW" and a.type in (cli.input_size,
                                                                        cli.square_size),
           "metavar HxW, parsed by cvnet.core.cli.input_size (or square_size)")
    expect("--output", lambda a: a.option_strings == ["-o", "--output"], "spelled -o/--output")
    expect("--json-out", lambda a: a.metavar == "FILE" and a.nargs is None, "takes FILE")
    expect("--json", lambda a: a.nargs == 0, "a switch that prints JSON (writing is --json-out)")
    expect("--precision", lambda a: set(a.choices) <= set(cli.PRECISIONS)
           and a.default in a.choices, "choices among fp32/fp16/int8, default one of them")
    expect("--engine", lambda a: a.metavar == "MODEL" and a.nargs is None, "a model file")
    expect("--verify-images", lambda a: a.type is cli.count and a.metavar == "N"
           and "--no-verify" in options, "N images, with --no-verify beside it")
    expect("--no-verify", lambda a: a.dest == "verify" and a.nargs == 0, "switches verify off")
    expect("--batch-size", lambda a: a.type is cli.positive_int and a.metavar == "N",
           "N >= 1 images per call")
    expect("--threads", lambda a: a.type is cli.positive_int and a.default is None
           and a.metavar == "N", "N >= 1, default: the backend's choice")
    expect("--device", lambda a: a.type is cli.cuda_device and a.metavar == "cuda:N"
           or (a.choices and set(a.choices) <= {"auto", "cpu", "cuda"})
           or set(getattr(a.type, "choices", ())) == {"auto", "cpu", "cuda"},
           "auto/cpu/cuda, or cuda:N for a GPU")
    expect("--verbose", lambda a: a.option_strings == ["-v", "--verbose"] and a.nargs == 0,
           "spelled -v/--verbose")
    expect("--seed", lambda a: a.type is int and a.metavar == "N", "an integer N")
    expect("--fpr", lambda a: (a.type, a.metavar) in ((cli.fpr_value, "F"),
                                                      (cli.fpr_list, "F,F,...")),
           "a false-positive rate F (or F,F,... where several), parsed by cvnet.core.cli")
    problems += ["{}: an old spelling shows in --help".format(old) for old in OLD_SPELLINGS
                 if old in options]
    return problems


def test_every_console_command_is_checked():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        scripts = tomllib.load(handle)["project"]["scripts"]
    assert set(scripts) == {name for name in PARSERS if name.startswith("cvnet-")}
    assert len(scripts) == 12


@pytest.mark.parametrize("name, parser", ALL, ids=[name for name, _ in ALL])
def test_shared_options_follow_the_glossary(name, parser):
    assert _glossary_problems(parser) == []
    if parser.prog not in ("python3 -m cvnet.jetson", "python3 -m cvnet.engines"):
        assert "--verbose" in _visible(parser), "{} has no -v/--verbose".format(name)


def test_the_check_catches_a_command_off_the_glossary():
    parser = cli.ArgumentParser(prog="cvnet-demo")
    parser.add_argument("--out")
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--input-size", type=int)
    parser.add_argument("--half", action="store_true")
    parser.add_argument("--fpr", type=float)
    problems = "\n".join(_glossary_problems(parser))
    for fragment in ("--input-size: metavar HxW", "--json: a switch", "--out: an old spelling",
                     "--half: an old spelling", "--fpr: a false-positive rate"):
        assert fragment in problems


def test_the_shared_values():
    assert cli.input_size("256") == (256, 256) and cli.input_size("256x128") == (256, 128)
    assert cli.square_size("64") == 64 and cli.square_size("64x64") == 64
    assert cli.cuda_device("cuda:1") == 1 and cli.cuda_device("2") == 2
    assert cli.cuda_device("cuda") == 0
    assert cli.fpr_value("1e-3") == 0.001 and cli.fpr_list("1e-3,1e-2,1e-3") == (0.01, 0.001)
    for parse, bad in ((cli.input_size, "0"), (cli.input_size, "big"), (cli.square_size, "64x32"),
                       (cli.fpr_value, "0"), (cli.fpr_value, "1"), (cli.fpr_list, ","),
                       (cli.positive_int, "0"), (cli.count, "-1"), (cli.cuda_device, "gpu1")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)


#: (command, arguments it needs, old spelling, the same in the glossary's spelling).
ALIASES = [
    ("cvnet-summary", [], ["--imgsz", "128"], ["--input-size", "128"]),
    ("cvnet-export", [], ["--imgsz", "64x32"], ["--input-size", "64x32"]),
    ("cvnet-export", [], ["--half"], ["--precision", "fp16"]),
    ("cvnet-export", [], ["--engine"], ["--build-engine"]),
    ("cvnet-train", [], ["--img-size", "64"], ["--input-size", "64"]),
    ("cvnet-search", [], ["--img-size", "64"], ["--input-size", "64"]),
    ("cvnet-compare-ops", [], ["--img-size", "64"], ["--input-size", "64"]),
    ("cvnet-eval", ["m.onnx", "--data", "d"], ["--json", "r.json"], ["--json-out", "r.json"]),
    ("cvnet-build", ["m.onnx"], ["--fp32"], ["--precision", "fp32"]),
    ("cvnet-build", ["m.onnx"], ["--int8"], ["--precision", "int8"]),
    ("cvnet-build", ["m.onnx"], ["--verify", "4"], ["--verify-images", "4"]),
    ("cvnet-build", ["m.onnx"], ["--device", "1"], ["--device", "cuda:1"]),
    ("cvnet-embed", ["--engine", "m.onnx", "--images", "i"], ["--out", "o"], ["-o", "o"]),
    ("cvnet-embed", ["--engine", "m.onnx", "--images", "i", "-o", "o"], ["--batch", "4"],
     ["--batch-size", "4"]),
    ("cvnet-match", ["--query", "q", "--gallery", "g"], ["--out", "m.csv"], ["--output", "m.csv"]),
    ("cvnet-bench", [], ["--json", "r.json"], ["--json-out", "r.json"]),
]


@pytest.mark.parametrize("command, needed, old, new", ALIASES,
                         ids=["{} {}".format(case[0], case[2][0]) for case in ALIASES])
def test_old_spellings_still_parse_to_the_same_values(command, needed, old, new, caplog):
    with caplog.at_level(logging.WARNING, logger="cvnet.core.cli"):
        from_old = vars(_parser(command).parse_args(needed + old))
    from_new = vars(_parser(command).parse_args(needed + new))
    assert from_old == from_new
    if old[0] != new[0]:  # a renamed option (not a new value format): warned, naming the new
        warning = next(r.getMessage() for r in caplog.records
                       if "{} is deprecated".format(old[0]) in r.getMessage())
        assert new[0] in warning.split("use ", 1)[1]


@pytest.mark.parametrize("command", ["cvnet-eval", "cvnet-embed", "cvnet-bench"])
def test_backend_and_precision_name_the_runtimes_of_the_glossary(command):
    """--backend picks the runtime of a model file (cvnet-match's --backend is its matching
    engine, exact|faiss, and is not a runtime); --precision offers OpenVINO's bf16 and auto."""
    options = _visible(_parser(command))
    backend, precision = options["--backend"], options["--precision"]
    names = (backend.type("onnxruntime,openvino") if backend.type is cli.backend_list
             else backend.choices)
    assert "openvino" in names and set(names) <= set(cli.BACKENDS)
    assert {"bf16", "auto"} <= set(precision.choices) and precision.default == "auto"
