"""Output that fits the terminal and the log: a bar on a terminal, a few plain lines elsewhere, and
tables whose cells are never read as markup."""

from __future__ import annotations

import argparse
import io

from responders.cli import Progress, _write_results


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_in_a_log_is_a_few_plain_lines_however_long_the_run() -> None:
    log = io.StringIO()
    progress = Progress(stream=log, every=50)
    progress.total = 100_000
    for _ in range(100_000):
        progress.step()
    progress.total += 5_000  # the total grows as files are decoded
    progress.step(5_000)
    progress.finish()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert len(lines) <= 5
    assert lines[-1] == "105000/105000 events"


def test_a_short_run_in_a_log_prints_no_progress() -> None:
    log = io.StringIO()
    progress = Progress(16, stream=log, every=50)
    for _ in range(16):
        progress.step()
    progress.finish()
    assert log.getvalue() == ""


def test_progress_on_a_terminal_draws_a_bar() -> None:
    tty = Terminal()
    progress = Progress(200, stream=tty, every=50)
    for _ in range(200):
        progress.step()
    progress.finish()
    assert "200/200" in tty.getvalue()


def test_table_cells_from_a_body_are_not_markup() -> None:
    out = io.StringIO()
    hostile = {
        "file": "x.json",
        "status": "contained",
        "incident": "inc-1",
        "verdict": {"leak": True, "severity": "high", "reasons": ["[bold red]spoof[/]"], "findings": []},
        "plan": [
            {"kind": "storage.make_container_private", "target": "/a/st1", "params": {"container": "[x]"}}
        ],
        "outcomes": [],
        "skipped": [{"what": "/a/st2", "why": "[link=http://example.invalid]click[/link]"}],
    }
    args = argparse.Namespace(format="table", execute=False)
    _write_results([hostile], {"read": 0, "write": 0}, args, out)
    text = out.getvalue()
    assert "[bold red]spoof[/]" in text
    assert "container=[x]" in text
    assert "[link=http://example.invalid]click[/link]" in text
    assert "\x1b[" not in text, "no escape codes in a file"
    assert "1 events (0 duplicate deliveries), 1 leaks" in text
