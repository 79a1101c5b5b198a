"""Which of an archive's indexes and constraints can be built before every table is loaded.

A restore loads one big table long after the small ones are done; their indexes, keys and
triggers can be built meanwhile on the idle cores. This module reads the archive's post-data
entries (``pg_restore -l`` for their list lines, ``pg_restore -f -`` for their SQL), finds the
tables each one touches, and splits the list lines into those ready now and the rest, for
``pg_restore -L``. An entry it cannot place for sure waits for the end.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Entry types that touch nothing but the tables their SQL names.
EARLY_TYPES = frozenset({"INDEX", "CONSTRAINT", "FK CONSTRAINT", "TRIGGER"})
_HEADER = re.compile(r"^-- Name: (.*); Type: (.*); Schema: (.*); Owner: (.*)$", re.MULTILINE)
_LIST_LINE = re.compile(r"^\d+; \d+ \d+ (.+)$")
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_TABLE_REF = re.compile(rf"\b(?:ON|ONLY|REFERENCES)\s+({_IDENT}\.{_IDENT})")


@dataclass(frozen=True)
class Entry:
    list_line: str
    kind: str  # "" when its SQL was not found
    tables: frozenset[str]


@dataclass(frozen=True)
class Plan:
    entries: list[Entry]

    def ready(self, loaded: Iterable[str]) -> list[str]:
        """List lines of the entries whose every table is in ``loaded``."""
        done = set(loaded)
        return [e.list_line for e in self.entries if e.kind in EARLY_TYPES and e.tables and e.tables <= done]

    def rest(self, built: Iterable[str]) -> list[str]:
        skip = set(built)
        return [e.list_line for e in self.entries if e.list_line not in skip]


def plan(listing: str, script: str) -> Plan:
    """Match each list line to its SQL in the script, and name the tables the SQL touches."""
    sql_of: dict[str, tuple[str, str] | None] = {}
    headers = list(_HEADER.finditer(script))
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(script)
        name, entry_type, schema, owner = header.groups()
        key = f"{entry_type} {schema} {name} {owner}"  # how pg_restore -l ends the entry's line
        # a description seen twice cannot be told apart: neither goes early
        sql_of[key] = None if key in sql_of else (entry_type, script[header.end() : end])
    entries = []
    for line in listing.splitlines():
        described = _LIST_LINE.match(line)
        if not described:
            continue
        found = sql_of.get(described.group(1))
        if found is None:
            entries.append(Entry(line, "", frozenset()))
        else:
            entries.append(Entry(line, found[0], frozenset(_TABLE_REF.findall(found[1]))))
    return Plan(entries)


def list_file_text(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)
