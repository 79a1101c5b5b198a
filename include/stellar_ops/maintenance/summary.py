"""What a maintenance run tells the ops channel: one mrkdwn message once VACUUM ANALYZE has run."""

from __future__ import annotations

from typing import Any

from stellar_ops.core.alerts import escape, info_message
from stellar_ops.core.durations import humanize_duration

TOP_TABLES = 5


def _percent(ratio: float) -> str:
    return f"{ratio * 100:.1f}%"


def message(
    *, statements: dict[str, Any], vacuumed: dict[str, float], bloat: dict[str, Any]
) -> dict[str, Any]:
    """Tables vacuumed and the time taken, the bloat report's worst tables before and after,
    what is still bloated, and whether pg_stat_statements is there.

    ``statements`` is ``check_pg_stat_statements``'s result, ``vacuumed`` the seconds of each
    table's VACUUM ANALYZE, ``bloat`` what ``report_bloat`` found."""
    took = humanize_duration(sum(vacuumed.values()))
    count = f"{len(vacuumed)} table{'s' if len(vacuumed) != 1 else ''}"
    headline = f":broom: *Database maintenance done:* VACUUM ANALYZE of {count} in {took}"
    if vacuumed:
        slowest = max(vacuumed, key=lambda name: vacuumed[name])
        if len(vacuumed) > 1:
            headline += f" (longest: {escape(slowest)}, {humanize_duration(vacuumed[slowest])})"
    lines = [headline]
    top = bloat.get("top") or []
    if top:
        lines.append("*Most dead tuples before the vacuum* (dead tuples, share of rows: before → after):")
        for row in top[:TOP_TABLES]:
            was = " :warning: over the bloat threshold before" if row["warning_before"] else ""
            lines.append(
                f"• {escape(row['table'])}: {row['dead_before']:,} ({_percent(row['dead_ratio_before'])}) → "
                f"{row['dead_after']:,} ({_percent(row['dead_ratio_after'])}){was}"
            )
    else:
        lines.append("*Dead tuples:* none before the vacuum")
    still = bloat.get("still_bloated") or []
    if still:
        lines.append(
            f":warning: *Still bloated after the vacuum:* {escape(', '.join(still))} "
            "(autovacuum is not keeping up: tune autovacuum_vacuum_scale_factor)"
        )
    if statements.get("installed") and statements.get("preloaded"):
        lines.append("*pg_stat_statements:* installed and preloaded")
    elif statements.get("installed"):
        lines.append(
            ":warning: *pg_stat_statements:* installed but not preloaded "
            "(add it to shared_preload_libraries; perf_analysis has no query statistics until then)"
        )
    else:
        lines.append(":warning: *pg_stat_statements:* not installed")
    return info_message("\n".join(lines))
