"""Game day guards and runbook extraction (the scenarios themselves run end to end in
tests/monitoring/test_game_days.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.settings import Settings
from flows.game_day import SCENARIOS, GameDayRefused, game_day, refuse_production
from tasks.game_day import RunbookStep, runbook_steps


def production_settings() -> Settings:
    return Settings(_env_file=None, environment="production",
                    database_url="postgresql+psycopg://app:a-real-password@db.example.org/textbook")  # pragma: allowlist secret


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_scenario_runs_commands_from_a_tagged_runbook_block(scenario: str):
    steps = runbook_steps(scenario)
    assert steps, f"no runbook block is tagged game-day={scenario}"
    assert all(step.runbook.endswith(".md") and step.command for step in steps)


def test_tagged_blocks_are_read_in_order_with_continuations_and_without_comments(tmp_path):
    (tmp_path / "a.md").write_text(
        "Prose `python -m nothing`.\n```bash\nuntagged --not-run\n```\n"
        "1. Restart:\n   ```bash game-day=one,two\n   # a comment\n   first --flag \\\n     --continued\n\n"
        "   second\n   ```\n```bash game-day=three\nthird\n```\n")
    (tmp_path / "b.md").write_text("```bash game-day=two\nfrom-b\n```\n")
    assert runbook_steps("one", tmp_path) == [RunbookStep("a.md", "first --flag --continued"), RunbookStep("a.md", "second")]
    assert [s.command for s in runbook_steps("two", tmp_path)] == ["first --flag --continued", "second", "from-b"]
    assert runbook_steps("thre", tmp_path) == []


def test_production_is_refused_unless_allow_production_names_it():
    settings = production_settings()
    with pytest.raises(GameDayRefused, match="allow_production"):
        refuse_production(settings, None)
    with pytest.raises(GameDayRefused):
        refuse_production(settings, "staging")
    refuse_production(settings, "production")
    refuse_production(Settings(_env_file=None, environment="test"), None)


def test_the_flow_refuses_production_before_it_touches_anything(monkeypatch):
    touched = []
    monkeypatch.setattr("flows.game_day.get_settings", production_settings)
    monkeypatch.setattr("flows.game_day.start_game_day_record", lambda *a, **k: touched.append("record"))
    for name, scenario in SCENARIOS.items():
        monkeypatch.setitem(SCENARIOS, name, replace(scenario, inject=lambda *a: touched.append("inject")))
    with pytest.raises(GameDayRefused):
        game_day.fn(scenario="service-down")
    assert touched == []


def test_the_runbook_sql_command_prints_rows_and_fails_on_an_error_or_when_no_row_comes(settings, capsys):
    """`python -m app sql` as the latency runbook uses it: a blocker that never shows up fails the step."""
    from app.__main__ import main

    assert main(["sql", "SELECT 2 AS two, NULL AS nothing"]) == 0
    assert capsys.readouterr().out == "two\tnothing\n2\t\n"
    assert main(["sql", "--until-rows", "1", "SELECT pid FROM pg_stat_activity WHERE false"]) == 1
    assert "no row within 1 s" in capsys.readouterr().err
    assert main(["sql", "SELECT pg_terminate_backend_typo(1)"]) == 1
    assert "pg_terminate_backend_typo" in capsys.readouterr().err
