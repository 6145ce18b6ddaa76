"""Progress in a log file: with no terminal attached, training and sampling write a line at a
steady interval instead of drawing a bar."""

import logging

from afd.core.progress import Ticker
from afd.runtime import trainer as trainer_module
from afd.runtime.progress import ProgressLog


def test_ticker_logs_a_line_per_interval(caplog):
    with caplog.at_level(logging.INFO, logger="afd.progress"):
        ticker = Ticker("sampling", 200, every_s=3600)
        ticker.tick(10)  # within the interval: nothing
        ticker.every_s = 0
        ticker.tick(50, ", loss 1.2500")
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("sampling: 50/200 (25%), loss 1.2500, ")
    assert "s left" in line


def test_without_a_terminal_training_logs_lines_instead_of_a_bar(monkeypatch):
    monkeypatch.setattr(trainer_module, "terminal_attached", lambda: False)
    quiet = trainer_module.build_trainer({"accelerator": "cpu"}, None, True, "SFT", max_steps=1)
    assert any(isinstance(c, ProgressLog) for c in quiet.callbacks)
    assert not quiet.progress_bar_callback
    monkeypatch.setattr(trainer_module, "terminal_attached", lambda: True)
    bar = trainer_module.build_trainer({"accelerator": "cpu"}, None, True, "SFT", max_steps=1)
    assert bar.progress_bar_callback and not any(isinstance(c, ProgressLog) for c in bar.callbacks)
