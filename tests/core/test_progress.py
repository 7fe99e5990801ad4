"""Progress: a bar only on a terminal, plain periodic log lines in files and pipes."""

import io
import logging

import pytest

from cvnet.core.progress import Progress, progress_bar

pytestmark = pytest.mark.device

logger = logging.getLogger("test.progress")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_stream_that_is_not_a_terminal_gets_plain_lines_without_carriage_returns(caplog):
    stream = io.StringIO()
    progress = progress_bar(4, "epoch 1/2", logger, interval=0.0, stream=stream)
    assert isinstance(progress, Progress)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        for step in range(4):
            progress.set_postfix(loss="{:.3f}".format(1.0 / (step + 1)))
            progress.update(1)
        progress.close()
    assert stream.getvalue() == ""  # nothing drawn
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and not any("\r" in line for line in lines)
    assert lines[-1].startswith("epoch 1/2: 4/4 steps, ") and lines[-1].endswith(", loss 0.250")


def test_lines_are_rate_limited_and_a_disabled_progress_logs_nothing(caplog):
    with caplog.at_level(logging.INFO, logger="test.progress"):
        slow = progress_bar(100, "search 1/1", logger, interval=3600.0, stream=io.StringIO())
        quiet = progress_bar(100, "epoch 1/1", logger, interval=0.0, enabled=False,
                             stream=io.StringIO())
        for _ in range(100):
            slow.update(1)
            quiet.update(1)
    assert caplog.records == [] and slow.done == quiet.done == 100


def test_a_terminal_gets_tqdm_where_it_is_installed():
    tqdm = pytest.importorskip("tqdm")
    stream = _Terminal()
    bar = progress_bar(3, "epoch 1/1", logger, stream=stream)
    assert isinstance(bar, tqdm.tqdm)
    bar.update(3)
    bar.close()
    assert "\r" in stream.getvalue()  # a bar redraws in place: fine on a terminal only
