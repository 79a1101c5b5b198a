"""An archive's indexes, keys and triggers, and the order they can be built in while tables load.

A restore loads the tables one after another (the big ones in pieces over several sessions); the
indexes and constraints of a loaded table need not wait for the others. This module reads the
archive's post-data entries (``pg_restore -l`` for their list lines, ``pg_restore -f -`` for
their SQL), finds the tables each one touches, and :class:`Schedule` says which entry may start
next: every table it names is loaded, what it needs is built (a foreign key waits for its tables'
keys and indexes), and nothing running would block it (only index builds share a table). An
entry it cannot place for sure is left for ``pg_restore -L`` at the end.

A plain primary key or unique constraint of an ordinary table is built in two steps, to the same
end: its unique index, an index build that shares the table with the table's other index builds,
then ``ADD CONSTRAINT ... USING INDEX`` on it, which reads nothing. Built as one statement, the
key would hold its table alone for a whole index build.
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
# every table a post-data statement names: ALTER TABLE [ONLY] t, CREATE INDEX ... ON [ONLY] t,
# CREATE TRIGGER ... ON t, REFERENCES t, a constraint trigger's FROM t
_TABLE_REF = re.compile(rf"\b(?:ALTER TABLE|ON|ONLY|REFERENCES|FROM)\s+(?:ONLY\s+)?({_IDENT}\.{_IDENT})")
_SETTING = re.compile(r"^(SET |SELECT pg_catalog\.set_config\()")
_DEFAULT_TABLESPACE = "SET default_tablespace = '';"
# exactly how pg_dump writes a primary key or unique constraint with no options
_PLAIN_KEY = re.compile(
    rf"^ALTER TABLE ONLY (?P<table>{_IDENT}\.{_IDENT})\n"
    rf"    ADD CONSTRAINT (?P<name>{_IDENT}) (?P<kind>PRIMARY KEY|UNIQUE) \((?P<columns>[^()]+)\);$"
)


@dataclass(frozen=True)
class Entry:
    list_line: str
    kind: str  # "" when its SQL was not found
    tables: frozenset[str]
    sql: str = ""  # its statements alone, without comments
    needs: Entry | None = None  # a step built before it (a key's unique index)
    part_of: str = ""  # for a step of an archive entry's statement: that statement

    @property
    def early(self) -> bool:
        return self.kind in EARLY_TYPES and bool(self.tables) and bool(self.sql)

    def blocks(self, other: Entry) -> bool:
        """Whether the two cannot run at once: they share a table, and are not both index builds."""
        return bool(self.tables & other.tables) and not (self.kind == other.kind == "INDEX")

    def describe(self) -> str:
        """Its statement, and the archive's statement it is a step of, if any."""
        return f"{self.sql} (a step of: {self.part_of})" if self.part_of else self.sql


def _in_steps(entry: Entry) -> list[Entry]:
    """A plain primary key or unique constraint as its unique index, then the constraint on it."""
    key = _PLAIN_KEY.match(entry.sql) if entry.kind == "CONSTRAINT" else None
    if key is None:
        return [entry]
    table, name, whole = key.group("table"), key.group("name"), " ".join(entry.sql.split())
    index = Entry(
        "",
        "INDEX",
        entry.tables,
        f"CREATE UNIQUE INDEX {name} ON {table} USING btree ({key.group('columns')});",
        part_of=whole,
    )
    attach = f"ALTER TABLE ONLY {table}\n    ADD CONSTRAINT {name} {key.group('kind')} USING INDEX {name};"
    return [index, Entry(entry.list_line, entry.kind, entry.tables, attach, needs=index, part_of=whole)]


@dataclass(frozen=True)
class Plan:
    entries: list[Entry]
    settings: list[str] = field(default_factory=list)  # the script's session settings
    # False when the script switches settings between entries (say, tablespaces): then every
    # entry is left to pg_restore, which follows them
    direct: bool = True
    ordinary_tables: frozenset[str] = frozenset()  # whose keys may be built in two steps

    def early(self) -> list[Entry]:
        """The entries built as tables load, in steps (a plain key of an ordinary table in two)."""
        if not self.direct:
            return []
        steps: list[Entry] = []
        for each in self.entries:
            if each.early:
                steps.extend(_in_steps(each) if each.tables <= self.ordinary_tables else [each])
        return steps

    def rest(self, built: Iterable[str]) -> list[str]:
        skip = set(built)
        return [e.list_line for e in self.entries if e.list_line not in skip]


def plan(listing: str, script: str, ordinary_tables: frozenset[str] = frozenset()) -> Plan:
    """Match each list line to its SQL in the script, and name the tables the SQL touches.

    ``ordinary_tables``: the restored tables (``schema.table`` as pg_dump quotes them) that are
    ordinary tables, whose keys may be built in two steps (not a partitioned one's).
    """
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
    return Plan(entries, settings, direct, ordinary_tables)


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
        keys = {each.needs for each in entries if each.needs is not None}
        # stable: listing order within a kind; a key's index first among the index builds
        self.waiting = sorted(entries, key=lambda each: (rank[each.kind], each not in keys))
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
        if entry.needs is not None and entry.needs not in self.built:
            return False
        if any(entry.blocks(each) for each in self.running):
            return False
        if entry.kind == "FK CONSTRAINT":  # the referenced key (and anything on its tables) first
            return all(self._unbuilt[table] == 0 for table in entry.tables)
        return True
