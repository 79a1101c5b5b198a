"""An archive's indexes, keys and triggers, and the order they can be built in while tables load.

A restore loads the tables one after another (the big ones in pieces over several sessions); the
indexes and constraints of a loaded table need not wait for the others. This module reads the
archive's post-data entries (``pg_restore -l`` for their list lines, ``pg_restore -f -`` for
their SQL), finds the tables each one touches, and :class:`Schedule` says which entry may start
next: every table it names is loaded, what it needs is built (a foreign key waits for its tables'
keys and indexes), and nothing running would block it (only index builds share a table). An
entry it cannot place for sure is left for ``pg_restore -L`` at the end.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

# Entry types that touch nothing but the tables their SQL names, in the order they go first.
EARLY_TYPES = ("CONSTRAINT", "INDEX", "TRIGGER", "FK CONSTRAINT")
_HEADER = re.compile(r"^-- Name: (.*); Type: (.*); Schema: (.*); Owner: (.*)$", re.MULTILINE)
_LIST_LINE = re.compile(r"^\d+; \d+ \d+ (.+)$")
_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_TABLE_REF = re.compile(rf"\b(?:ON|ONLY|REFERENCES)\s+({_IDENT}\.{_IDENT})")
_SETTING = re.compile(r"^(SET |SELECT pg_catalog\.set_config\()")
_DEFAULT_TABLESPACE = "SET default_tablespace = '';"


@dataclass(frozen=True)
class Entry:
    list_line: str
    kind: str  # "" when its SQL was not found
    tables: frozenset[str]
    sql: str = ""  # its statements alone, without comments

    @property
    def early(self) -> bool:
        return self.kind in EARLY_TYPES and bool(self.tables) and bool(self.sql)

    def blocks(self, other: Entry) -> bool:
        """Whether the two cannot run at once: they share a table, and are not both index builds."""
        return bool(self.tables & other.tables) and not (self.kind == other.kind == "INDEX")


@dataclass(frozen=True)
class Plan:
    entries: list[Entry]
    settings: list[str] = field(default_factory=list)  # the script's session settings
    # False when the script switches settings between entries (say, tablespaces): then every
    # entry is left to pg_restore, which follows them
    direct: bool = True

    def early(self) -> list[Entry]:
        return [each for each in self.entries if each.early] if self.direct else []

    def rest(self, built: Iterable[str]) -> list[str]:
        skip = set(built)
        return [e.list_line for e in self.entries if e.list_line not in skip]


def plan(listing: str, script: str) -> Plan:
    """Match each list line to its SQL in the script, and name the tables the SQL touches."""
    sql_of: dict[str, tuple[str, str] | None] = {}
    headers = list(_HEADER.finditer(script))
    direct = True
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(script)
        name, entry_type, schema, owner = header.groups()
        key = f"{entry_type} {schema} {name} {owner}"  # how pg_restore -l ends the entry's line
        statements, switches = _statements(script[header.end() : end])
        direct = direct and not switches
        # a description seen twice cannot be told apart: neither goes early
        sql_of[key] = None if key in sql_of else (entry_type, statements)
    entries = []
    for line in listing.splitlines():
        described = _LIST_LINE.match(line)
        if not described:
            continue
        found = sql_of.get(described.group(1))
        if found is None:
            entries.append(Entry(line, "", frozenset()))
        else:
            entries.append(Entry(line, found[0], frozenset(_TABLE_REF.findall(found[1])), found[1]))
    preamble = script[: headers[0].start()] if headers else ""
    settings = [each for each in preamble.splitlines() if _SETTING.match(each)]
    return Plan(entries, settings, direct)


def _statements(text: str) -> tuple[str, bool]:
    """An entry's SQL without comments and psql meta-commands; and whether it changes a setting."""
    kept, switches = [], False
    for each in text.splitlines():
        stripped = each.strip()
        if not stripped or stripped.startswith(("--", "\\")) or stripped == _DEFAULT_TABLESPACE:
            continue
        switches = switches or bool(_SETTING.match(stripped))
        kept.append(each)
    return "\n".join(kept), switches


def list_file_text(lines: list[str]) -> str:
    return "".join(f"{line}\n" for line in lines)


class Schedule:
    """Which early entry may start next, given the tables loaded and what is built or running.

    Not thread-safe: its user holds a lock around every call.
    """

    def __init__(self, entries: list[Entry]) -> None:
        rank = {kind: index for index, kind in enumerate(EARLY_TYPES)}
        self.waiting = sorted(
            entries, key=lambda each: rank[each.kind]
        )  # stable: listing order within a kind
        self.running: list[Entry] = []
        self.built: list[Entry] = []
        self.loaded: set[str] = set()
        self.all_loaded = False
        # per table, its keys, indexes and triggers not built yet: what its foreign keys wait for
        self._unbuilt: Counter[str] = Counter(
            table for each in entries if each.kind != "FK CONSTRAINT" for table in each.tables
        )

    def next(self) -> Entry | None:
        """The first waiting entry that may start now (it is then running), or None."""
        for entry in self.waiting:
            if self._may_start(entry):
                self.waiting.remove(entry)
                self.running.append(entry)
                return entry
        return None

    def done(self, entry: Entry) -> None:
        self.running.remove(entry)
        self.built.append(entry)
        if entry.kind != "FK CONSTRAINT":
            self._unbuilt.subtract(entry.tables)

    def finished(self) -> bool:
        return not self.waiting and not self.running

    def _may_start(self, entry: Entry) -> bool:
        if not (self.all_loaded or entry.tables <= self.loaded):
            return False
        if any(entry.blocks(each) for each in self.running):
            return False
        if entry.kind == "FK CONSTRAINT":  # the referenced key (and anything on its tables) first
            return all(self._unbuilt[table] == 0 for table in entry.tables)
        return True
