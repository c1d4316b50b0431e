"""Every service section is validated before a command starts (services/cli/config_sections.py)."""

from __future__ import annotations

from services.cli.config_sections import SECTIONS, section_problems
from services.cli.registry import builders
from services.harness.config import Credentials, Settings


def test_every_section_a_service_reads_has_its_model_checked():
    assert set(SECTIONS) == {name for name in Settings.model_fields
                             if Settings.model_fields[name].annotation == Settings.model_fields["router"].annotation}
    assert set(builders()) - {"projections"} <= {*SECTIONS, "gateway"}  # the gateway reads `channels`


def test_a_webhook_exposed_without_a_token_is_refused_before_start_naming_the_key():
    settings = Settings(channels={"http": {"host": "0.0.0.0"}})
    assert section_problems(settings, Credentials(), "config.yml") == [
        "config.yml: channels.http.host: 0.0.0.0 is not loopback; set webhook_token in credentials.yml"]
    assert section_problems(settings, Credentials(webhook_token="t0ken"), "config.yml") == []


def test_problems_in_several_sections_are_each_named_with_the_full_path():
    settings = Settings(channels={"http": {"port": "eighty"}}, queue={"max_concurent": 3}, runner={"cpus": "lots"},
                        broker={"model_proxy": {"port": "abc"}}, governance={"gates": {"none": {"role": "x"}}})
    keys = [line.split(": ")[1] for line in section_problems(settings, Credentials(), "c.yml")]
    assert keys == ["channels.http.port", "queue.max_concurent", "runner.cpus", "broker.model_proxy.port", "governance.gates"]
