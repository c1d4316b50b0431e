"""The ``model_usage`` projection: per-call rows and per-group totals, rebuilt identically from the log."""

from __future__ import annotations

import pytest

from events.catalogue.broker import ModelRequestRefused, ModelUsageRecorded
from projections.audit import verify
from projections.runner import ProjectionRunner
from projections.sqlite import open_db
from projections.usage import UsageProjection, spent_usd
from services.harness.emit import append_emit
from services.harness.service import Emit


def used(run: str, folder: str, cost: float, **tokens) -> ModelUsageRecorded:
    return ModelUsageRecorded(run_id=run, group_folder=folder, model="claude-opus-5-5", status=200, cost_usd=cost, **tokens)


async def test_totals_add_up_per_group_and_a_rebuild_matches_the_live_tables(js_store, tmp_path):
    facts = [used("r1", "family", 0.25, input_tokens=100, output_tokens=10),
             used("r2", "family", 0.5, cache_read_input_tokens=1000, cache_creation_input_tokens=50),
             used("r3", "main", 1.0, output_tokens=3),
             ModelRequestRefused(run_id="r4", group_folder="family", reason="spent", spent_usd=0.75, budget_usd=0.5)]
    for i, fact in enumerate(facts):
        await append_emit(js_store, Emit.append(fact.group_folder, fact), source="broker", msg_id=f"m{i}")
    live_path = tmp_path / "live.db"
    live = open_db(live_path)
    await ProjectionRunner(live, [UsageProjection()], js_store).catch_up()
    rows = {r[0]: r[1:] for r in live.execute("SELECT group_folder, calls, input_tokens, output_tokens,"
                                              " cache_creation_input_tokens, cache_read_input_tokens, refused"
                                              " FROM model_usage_totals")}
    assert rows == {"family": (2, 100, 10, 50, 1000, 1), "main": (1, 0, 3, 0, 0, 0)}
    assert spent_usd(live, "family") == pytest.approx(0.75) and spent_usd(live, "nobody") == 0.0
    assert live.execute("SELECT count(*) FROM model_usage").fetchone() == (3,)
    checks = await verify(js_store, live_path, [UsageProjection()])
    assert {c.table for c in checks} == {"model_usage", "model_usage_totals"} and all(c.ok for c in checks)


async def test_a_free_count_tokens_record_leaves_the_spend_and_tokens_as_they_were(js_store, tmp_path):
    facts = [used("r1", "family", 0.25, input_tokens=100, output_tokens=10),
             ModelUsageRecorded(run_id="r1", group_folder="family", model="claude-opus-5-5", status=200,
                                endpoint="count_tokens")]
    for i, fact in enumerate(facts):
        await append_emit(js_store, Emit.append(fact.group_folder, fact), source="broker", msg_id=f"m{i}")
    db = open_db(tmp_path / "live.db")
    await ProjectionRunner(db, [UsageProjection()], js_store).catch_up()
    assert spent_usd(db, "family") == pytest.approx(0.25)
    assert db.execute("SELECT input_tokens, output_tokens FROM model_usage_totals").fetchone() == (100, 10)


def test_a_usage_event_from_before_the_endpoint_field_reads_as_a_messages_call():
    old = {"run_id": "r1", "group_folder": "family", "model": "claude-opus-5-5", "status": 200, "input_tokens": 3}
    assert ModelUsageRecorded.model_validate(old).endpoint == "messages"
