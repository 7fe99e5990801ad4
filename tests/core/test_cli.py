"""The shared --help formatter: plain text, defaults shown only when they say something."""

import os
import subprocess
import sys

import pytest

from cvnet.core.cli import ArgumentParser, doc_summary, plain_text

pytestmark = pytest.mark.device

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DOC = """``cvnet-demo``: does a thing with :func:`cvnet.engines.open_engine`.

Second paragraph, not part of the summary.
"""


def _help(parser):
    return " ".join(parser.format_help().split())


def test_plain_text_drops_rest_markup():
    assert plain_text("``cvnet-eval`` runs :func:`~cvnet.engines.open_engine`; Examples::") == \
        "cvnet-eval runs cvnet.engines.open_engine; Examples:"
    assert doc_summary(DOC) == "cvnet-demo: does a thing with cvnet.engines.open_engine."


def test_only_real_defaults_are_appended_once():
    parser = ArgumentParser(prog="cvnet-demo", description=DOC)
    parser.add_argument("--engine", help="model file")
    parser.add_argument("--batch", type=int, default=8, help="images per call")
    parser.add_argument("--topk", type=int, default=10, help="matches (default: 10)")
    parser.add_argument("--sizes", default=[1, 8], help="batch sizes")
    parser.add_argument("--kwargs", default={}, help="options")
    parser.add_argument("--fast", action="store_true", help="go fast")
    parser.add_argument("--no-check", dest="check", action="store_false", help="skip checks")
    text = _help(parser)
    assert "model file --batch" in text  # nothing appended to a None default
    assert "images per call (default: 8)" in text
    assert text.count("(default: 10)") == 1
    assert "batch sizes (default: 1,8)" in text
    for noise in ("(default: None)", "(default: False)", "(default: True)", "(default: {})"):
        assert noise not in text
    assert "cvnet-demo: does a thing with cvnet.engines.open_engine." in text
    assert "``" not in text and ":func:" not in text


def test_lines_do_not_break_inside_hyphenated_names_and_examples_stay_as_written():
    parser = ArgumentParser(prog="cvnet-demo", description="word " * 14 + "cvnet-compare-ops "
                            "and index-00001.csv\n\nExamples::\n\n    cvnet-demo --fast\n"
                            "    cvnet-demo --batch 4\n")
    parser.add_argument("--fast", action="store_true",
                        help="see " + "word " * 9 + "cvnet-compare-ops and cvnet-export --half")
    text = parser.format_help()
    assert "cvnet-compare-ops" in text.replace("\n", " ")
    assert not any(line.rstrip().endswith("-") for line in text.splitlines())
    assert "Examples:\n\n    cvnet-demo --fast\n    cvnet-demo --batch 4" in text


def test_subparsers_inherit_the_formatter():
    parser = ArgumentParser(prog="python3 -m demo")
    commands = parser.add_subparsers(dest="command")
    sub = commands.add_parser("embed", description=DOC)
    sub.add_argument("--engine", help="model file")
    sub.add_argument("--batch", type=int, default=8, help="images per call")
    text = _help(sub)
    assert "images per call (default: 8)" in text and "``" not in text
    assert "(default: None)" not in text


def test_deprecation_warnings_use_the_commands_log_format(tmp_path):
    """An old spelling's warning is parsed before the command sets up logging; it must still come
    out in the one log format (``LEVEL logger: message``), not as a bare last-resort line."""
    env = dict(os.environ, PYTHONPATH=ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "cvnet.jetson", "match", "--query", str(tmp_path / "q"),
         "--gallery", str(tmp_path / "g"), "--out", str(tmp_path / "m.csv")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        universal_newlines=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert ("WARNING cvnet.core.cli: --out is deprecated and will be removed in the next "
            "release: use -o/--output") in done.stderr.splitlines()


def test_a_required_output_with_an_old_spelling_shows_as_required():
    """cvnet-embed's -o is required (checked after parsing, so that --out counts): its usage line
    must not show it in brackets as if it were optional."""
    from cvnet.core.cli import add_output

    parser = ArgumentParser(prog="cvnet-demo")
    add_output(parser, help="output folder", required=True, aliases=("--out",))
    usage = " ".join(parser.format_usage().split())
    assert "-o OUTPUT" in usage and "[-o OUTPUT]" not in usage
    assert "[-o OUTPUT]" not in " ".join(parser.format_help().split())
    assert parser.parse_args(["--out", "x"]).output == "x"  # the old spelling still counts
    output = next(action for action in parser._actions if "-o" in action.option_strings)
    assert output.required is False  # argparse itself does not check it
