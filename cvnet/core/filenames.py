"""File names are bytes: one lossless, one-line text form for every index and CSV (Python 3.6).

A POSIX file name is any byte sequence without ``/`` and NUL. Python hands it over as ``str``
decoded with the file system encoding and ``surrogateescape``, and that encoding depends on the
interpreter and the locale: UTF-8 on Python 3.7+ and under a UTF-8 locale, ASCII on Python 3.6
under ``LANG=C`` (a systemd unit, a cron job). So the same file is ``"véhicule.jpg"`` in one
run and ``"v\\udcc3\\udca9hicule.jpg"`` in the next, and a name that is not valid UTF-8 (a
Latin-1 camera, a Windows share) holds surrogates that no UTF-8 file can store.

cvnet therefore writes names as **escaped text** (:func:`encode_name`): the name's bytes read as
UTF-8, with ``%XX`` (RFC 3986 percent-encoding, upper-case hex) for every byte that is not
part of a valid UTF-8 character, for the UTF-8 bytes of the characters that break a line or a
CSV field (:data:`ESCAPED`: C0 and C1 controls, DEL, U+2028, U+2029) and for ``%`` itself::

    b"cars/v\\xc3\\xa9hicule.jpg"   ->  "cars/véhicule.jpg"      (valid UTF-8: as it reads)
    b"cars/v\\xe9hicule.jpg"        ->  "cars/v%E9hicule.jpg"    (Latin-1 byte 0xE9)
    b"100%.jpg"                    ->  "100%25.jpg"
    b"two\\nlines.jpg"              ->  "two%0Alines.jpg"        (control characters)

The rule is fixed: it does not ask the interpreter's Unicode database (``str.isprintable``),
which changes with the Python version (U+1FAE0 is unassigned in Python 3.6's Unicode 10 and
printable in 3.11's Unicode 14), so the same bytes give the same text on the Jetson and on the
host. Every other valid UTF-8 character is kept as it is, assigned or not, visible or not.

The text is valid UTF-8, one line, readable where the name is, and exact: any tool gets the
bytes back with ``urllib.parse.unquote_to_bytes(text)`` (:func:`decode_name`), under any locale.
Texts that escape more than this rule (those of cvnet before it, which escaped every character
Python called unprintable) decode to the same bytes, so compare names by :func:`decode_name`,
never as text.

Example:
    >>> text = encode_name(os.fsencode(path))        # for the index / CSV
    >>> open(native_name(text), "rb")                # the same file, whatever the locale now
"""

import os
import re
import urllib.parse
from typing import Union

#: How :func:`encode_name` writes names, as recorded in files that use it.
NAME_ENCODING = "utf-8, other bytes and '%' as %XX"

#: The characters :func:`encode_name` escapes: C0 controls, DEL, C1 controls, the line and
#: paragraph separators, ``%``, and the surrogates U+DC80..U+DCFF that ``surrogateescape``
#: holds bytes that are not UTF-8 in. A fixed set: no Unicode database is asked.
ESCAPED = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029%\udc80-\udcff]")


def _escape(match) -> str:
    char = match.group()
    if "\udc80" <= char <= "\udcff":  # a byte that is not valid UTF-8, held by surrogateescape
        return "%{:02X}".format(ord(char) - 0xDC00)
    return "".join("%{:02X}".format(byte) for byte in char.encode("utf-8"))


def encode_name(name: Union[str, bytes]) -> str:
    """A file name (or path) as lossless, one-line UTF-8 text.

    Args:
        name: The name's bytes, or a ``str`` from the operating system (``os.listdir``,
            ``sys.argv``...), which is first turned back into its bytes with ``os.fsencode``.

    Returns:
        The escaped text (see the module docstring); the name itself when it is valid UTF-8
        without a character of :data:`ESCAPED`.
    """
    data = os.fsencode(name) if isinstance(name, str) else bytes(name)
    return ESCAPED.sub(_escape, data.decode("utf-8", "surrogateescape"))


def decode_name(text: str) -> bytes:
    """The exact bytes of a name written by :func:`encode_name`."""
    return urllib.parse.unquote_to_bytes(text)


def native_name(text: str) -> str:
    """The ``str`` this interpreter and locale use for the name :func:`encode_name` wrote.

    Pass it to ``open``, ``os.stat``... (they turn it back into the same bytes).
    """
    return os.fsdecode(decode_name(text))


def name_from_utf8(text: str) -> str:
    """The ``str`` to open for a name read literally from a UTF-8 text file.

    Read such files with ``errors="surrogateescape"``: a valid UTF-8 name then works under any
    locale (Python 3.6 under ``LANG=C`` cannot open ``"é"`` as given), and bytes that are not
    UTF-8 reach the file system unchanged.
    """
    return os.fsdecode(text.encode("utf-8", "surrogateescape"))


def name_to_utf8(name: str) -> str:
    """The inverse of :func:`name_from_utf8`: the name's bytes as text for a UTF-8 file.

    Encode the result with ``errors="surrogateescape"``; a name that is valid UTF-8 is written
    as plain UTF-8, any other bytes as they are.
    """
    return os.fsencode(name).decode("utf-8", "surrogateescape")
