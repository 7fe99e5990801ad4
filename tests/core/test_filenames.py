"""File names are bytes: the escaped text form is exact, printable and the same under any locale."""

import binascii
import json
import os
import subprocess
import sys
import urllib.parse

import pytest

from cvnet.core.filenames import decode_name, encode_name, name_from_utf8, name_to_utf8, native_name

pytestmark = pytest.mark.device

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NAMES = [
    (b"plain_01.jpg", "plain_01.jpg"),
    (b"cars/v\xc3\xa9hicule.jpg", "cars/v\u00e9hicule.jpg"),  # valid UTF-8 reads as it is
    (b"cars/v\xe9hicule.jpg", "cars/v%E9hicule.jpg"),  # Latin-1: not UTF-8
    (b"100%.jpg", "100%25.jpg"),  # '%' itself, so that decoding is unambiguous
    (b"%E9.jpg", "%25E9.jpg"),
    (b"two\nlines,\"q\".jpg", "two%0Alines,\"q\".jpg"),  # control characters
    (b"\xed\xa0\x80.png", "%ED%A0%80.png"),  # an encoded surrogate is not UTF-8 either
    (b"\xe8\xbb\x8a \xf0\x9f\x9a\x97.png", "\u8eca \U0001f697.png"),
]


@pytest.mark.parametrize("data, text", NAMES)
def test_escaped_text_is_exact_and_readable(data, text):
    assert encode_name(data) == text
    assert encode_name(os.fsdecode(data)) == text  # the str the operating system hands over
    assert decode_name(text) == data
    assert urllib.parse.unquote_to_bytes(text) == data  # what any other tool does
    assert os.fsencode(native_name(text)) == data
    text.encode("utf-8")  # always writable to a UTF-8 file
    assert "\n" not in text and "\r" not in text


def _committed_names():
    with open(os.path.join(ROOT, "tests", "core", "data", "escaped_names.json")) as handle:
        return json.load(handle)["names"]


@pytest.mark.parametrize("entry", _committed_names(), ids=lambda entry: entry["what"])
def test_the_same_bytes_give_the_same_text_on_every_python(entry):
    """The committed texts hold on Python 3.6 (the device suite) as on 3.11: the rule asks no
    Unicode database, whose version differs between them (U+1FAE0 is unassigned in 3.6)."""
    data = binascii.unhexlify(entry["bytes"])
    assert encode_name(data) == entry["text"]
    assert encode_name(os.fsdecode(data)) == entry["text"]
    assert decode_name(entry["text"]) == data


def test_texts_of_the_older_rule_decode_to_the_same_bytes():
    """cvnet once escaped every character Python called unprintable (U+00A0, U+E000...):
    those texts still give the bytes, so stores written then still read and resume."""
    data = "car\u00a0\ue000.jpg".encode("utf-8")
    assert decode_name("car%C2%A0%EE%80%80.jpg") == data
    assert encode_name(data) == "car\u00a0\ue000.jpg"


def test_every_byte_round_trips():
    data = bytes(range(1, 256)).replace(b"/", b"")
    assert decode_name(encode_name(data)) == data
    assert encode_name(data).isprintable()


def test_names_read_literally_from_utf8_files():
    for data, _ in NAMES:
        literal = data.decode("utf-8", "surrogateescape")
        assert os.fsencode(name_from_utf8(literal)) == data
        assert name_to_utf8(os.fsdecode(data)) == literal


@pytest.mark.parametrize("locale", ["C", "C.UTF-8"])
def test_the_same_bytes_give_the_same_text_under_any_locale(locale):
    """Python 3.6 under LANG=C decodes names as ASCII with surrogates; the text must not
    change (the device suite runs this under Python 3.6)."""
    code = ("import os, sys; from cvnet.core.filenames import encode_name, native_name; "
            "names = [os.fsdecode(d) for d in (b'v\\xc3\\xa9hicule.jpg', b'v\\xe9hicule.jpg')]; "
            "sys.stdout.write(ascii([encode_name(n) for n in names] + "
            "[os.fsencode(native_name(encode_name(n))) for n in names]))")
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONIOENCODING", "PYTHONUTF8") and not key.startswith("LC_")}
    env.update(LANG=locale, LC_ALL=locale, PYTHONPATH=ROOT)
    output = subprocess.check_output([sys.executable, "-c", code], env=env, cwd=ROOT)
    assert output.decode("ascii") == ascii(["v\u00e9hicule.jpg", "v%E9hicule.jpg",
                                            b"v\xc3\xa9hicule.jpg", b"v\xe9hicule.jpg"])
