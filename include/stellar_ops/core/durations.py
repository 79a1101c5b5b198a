"""Durations as a person reads them: ``7 days``, ``2 h 5 min``, ``4 min 19 s``, ``850 ms``.

``str(timedelta)`` gives ``0:04:19.200000`` or ``7 days, 0:00:00``, and raw seconds (``259.2s``)
make the reader do the arithmetic. Every message, log line and report that shows a duration or a
window to a person goes through :func:`humanize_duration`; documents meant for programs (JSON
reports, metrics) keep their seconds.
"""

from __future__ import annotations

import math
from datetime import timedelta

# (seconds in the unit, singular, plural)
_UNITS: tuple[tuple[int, str, str], ...] = (
    (86400, "day", "days"),
    (3600, "h", "h"),
    (60, "min", "min"),
    (1, "s", "s"),
)


def _unit(count: int, singular: str, plural: str) -> str:
    return f"{count} {singular if count == 1 else plural}"


def humanize_duration(value: timedelta | float) -> str:
    """At most two units, the larger first, the second left out when it is zero; rounded to the
    smaller unit shown. Under a second: milliseconds; under ten seconds: tenths of a second."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"a duration must be a finite number of seconds, got {seconds!r}")
    if seconds < 0:
        return "-" + humanize_duration(-seconds)
    if round(seconds * 1000) < 1000:
        return f"{round(seconds * 1000)} ms"
    if round(seconds, 1) < 10:
        return f"{round(seconds, 1):g} s"
    for index, (size, _, _) in enumerate(_UNITS):
        if seconds >= size:
            step = _UNITS[index + 1][0] if index + 1 < len(_UNITS) else 1
            break
    # Round to the smaller unit shown, then name the units again: 59 min 59.6 s is "1 h".
    total = round(seconds / step) * step
    for index, (size, singular, plural) in enumerate(_UNITS):
        if total >= size:
            lead, rest = divmod(total, size)
            text = _unit(int(lead), singular, plural)
            if index + 1 < len(_UNITS) and rest:
                smaller, one, many = _UNITS[index + 1]
                text += " " + _unit(int(rest // smaller), one, many)
            return text
    raise AssertionError(f"unreachable: {seconds!r} seconds")  # pragma: no cover
