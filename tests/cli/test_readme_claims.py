"""The README's claims about what `up` runs, errors and logs match the code (the behaviour itself is tested in
test_cli.py, test_cli_output.py and tests/gateway/test_webhook_errors.py)."""

from __future__ import annotations

import re
from pathlib import Path

from services.harness.config import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_readme_lists_exactly_the_services_up_starts_in_their_order():
    sentence = re.search(r"and the services ((?:`[a-z]+`(?:, | and )?)+)", " ".join(README.split())).group(1)
    assert re.findall(r"`([a-z]+)`", sentence) == Settings().services


def test_the_readme_states_the_webhook_error_statuses_the_channel_answers():
    from services.gateway import http_channel

    for status in ("400", "401", "404", "413", "415", "422"):
        assert f"`{status}`" in README and f"``{status}``" in http_channel.__doc__


def test_the_readme_describes_the_console_log_as_the_logging_module_does():
    text = " ".join(README.split())
    assert "JSON lines in `data/logs/nanoclaw.log`" in text and "the same JSON lines when it is not" in text
