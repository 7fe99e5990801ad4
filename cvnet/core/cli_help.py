"""The ``--help`` layout every cvnet command shares: plain text, real defaults only.

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
import re
import textwrap

_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")  # :func:`cvnet.engines.open_engine` -> cvnet.engines.open_engine
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
    """``argparse.ArgumentParser`` with :class:`HelpFormatter`; its subparsers inherit both."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
