"""stellar_ops.maintenance.summary: the one message a maintenance run sends once it has vacuumed."""

from __future__ import annotations

from typing import Any

from stellar_ops.core.alerts import markdown_leftovers
from stellar_ops.maintenance import summary


def _row(table: str, dead: int, ratio: float, *, warning: bool = False) -> dict[str, Any]:
    return {
        "table": table,
        "dead_before": dead,
        "dead_ratio_before": ratio,
        "warning_before": warning,
        "dead_after": 0,
        "dead_ratio_after": 0.0,
    }


def _text(**changes: Any) -> str:
    arguments: dict[str, Any] = {
        "statements": {"installed": True, "preloaded": True, "warning": None},
        "vacuumed": {"public.trades": 125.4, "public.events": 3.2, "public.accounts": 0.4},
        "bloat": {
            "still_bloated": [],
            "top": [_row("public.trades", 50_000, 0.25, warning=True), _row("public.events", 1_200, 0.01)],
        },
    }
    payload = summary.message(**{**arguments, **changes})
    assert payload["blocks"][0]["text"] == {"type": "mrkdwn", "text": payload["text"]}
    return str(payload["text"])


def test_the_summary_names_tables_time_bloat_and_pg_stat_statements() -> None:
    lines = _text().splitlines()
    assert lines == [
        ":broom: *Database maintenance done:* VACUUM ANALYZE of 3 tables in 2 min 9 s "
        "(longest: public.trades, 2 min 5 s)",
        "*Most dead tuples before the vacuum* (dead tuples, share of rows: before → after):",
        "• public.trades: 50,000 (25.0%) → 0 (0.0%) :warning: over the bloat threshold before",
        "• public.events: 1,200 (1.0%) → 0 (0.0%)",
        "*pg_stat_statements:* installed and preloaded",
    ]
    assert markdown_leftovers("\n".join(lines)) == []


def test_what_is_still_bloated_and_a_missing_preload_are_flagged() -> None:
    text = _text(
        statements={"installed": True, "preloaded": False, "warning": "not preloaded"},
        bloat={"still_bloated": ["public.trades"], "top": []},
        vacuumed={"public.trades": 0.85},
    )
    assert text.splitlines()[0] == ":broom: *Database maintenance done:* VACUUM ANALYZE of 1 table in 850 ms"
    assert "*Dead tuples:* none before the vacuum" in text
    assert ":warning: *Still bloated after the vacuum:* public.trades" in text
    assert ":warning: *pg_stat_statements:* installed but not preloaded" in text
    assert ":warning: *pg_stat_statements:* not installed" in _text(statements={"installed": False})


def test_only_the_worst_tables_are_listed() -> None:
    top = [_row(f"public.t{i}", 1000 - i, 0.1) for i in range(summary.TOP_TABLES + 3)]
    text = _text(bloat={"still_bloated": [], "top": top})
    assert sum(line.startswith("• public.t") for line in text.splitlines()) == summary.TOP_TABLES
