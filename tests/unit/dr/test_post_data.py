"""An archive's indexes and constraints: their SQL, their tables, and the order they may be built in."""

from __future__ import annotations

from stellar_ops.dr.engine import post_data

LISTING = """;
; Archive created at 2026-11-28 22:53:59 UTC
;
; Selected TOC Entries:
;
3242; 2606 16428 CONSTRAINT public accounts accounts_pkey stellar
3247; 2606 16441 CONSTRAINT public escrows escrows_pkey stellar
3256; 2606 16470 CONSTRAINT public events events_pkey stellar
3245; 1259 16443 INDEX public escrows_buyer_idx stellar
3254; 1259 16476 INDEX public events_escrow_created_idx stellar
3270; 1259 16480 INDEX public "Odd idx" stellar
3263; 2606 16471 FK CONSTRAINT public events events_escrow_id_fkey stellar
3262; 2606 16454 FK CONSTRAINT public trades trades_escrow_id_fkey stellar
3280; 2618 16500 RULE public escrows escrows_rule stellar
3290; 0 0 TRIGGER public events audit stellar
"""

SCRIPT = """--
-- PostgreSQL database dump
--

\\restrict abc

SET statement_timeout = 0;

--
-- Name: accounts accounts_pkey; Type: CONSTRAINT; Schema: public; Owner: stellar
--

ALTER TABLE ONLY public.accounts
    ADD CONSTRAINT accounts_pkey PRIMARY KEY (id);


--
-- Name: escrows escrows_pkey; Type: CONSTRAINT; Schema: public; Owner: stellar
--

ALTER TABLE ONLY public.escrows
    ADD CONSTRAINT escrows_pkey PRIMARY KEY (id);


--
-- Name: events events_pkey; Type: CONSTRAINT; Schema: public; Owner: stellar
--

ALTER TABLE ONLY public.events
    ADD CONSTRAINT events_pkey PRIMARY KEY (id);


--
-- Name: escrows_buyer_idx; Type: INDEX; Schema: public; Owner: stellar
--

CREATE INDEX escrows_buyer_idx ON public.escrows USING btree (buyer_account);


--
-- Name: events_escrow_created_idx; Type: INDEX; Schema: public; Owner: stellar
--

CREATE INDEX events_escrow_created_idx ON public.events USING btree (escrow_id, created_at);


--
-- Name: "Odd idx"; Type: INDEX; Schema: public; Owner: stellar
--

CREATE INDEX "Odd idx" ON public."Odd Table" USING btree (id);


--
-- Name: events events_escrow_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: stellar
--

ALTER TABLE ONLY public.events
    ADD CONSTRAINT events_escrow_id_fkey FOREIGN KEY (escrow_id) REFERENCES public.escrows(id);


--
-- Name: trades trades_escrow_id_fkey; Type: FK CONSTRAINT; Schema: public; Owner: stellar
--

ALTER TABLE ONLY public.trades
    ADD CONSTRAINT trades_escrow_id_fkey FOREIGN KEY (escrow_id) REFERENCES public.escrows(id);


--
-- Name: escrows escrows_rule; Type: RULE; Schema: public; Owner: stellar
--

CREATE RULE escrows_rule AS ON DELETE TO public.escrows DO INSTEAD NOTHING;


--
-- PostgreSQL database dump complete
--

\\unrestrict abc
"""


def line(dump_id: int) -> str:
    return next(each for each in LISTING.splitlines() if each.startswith(f"{dump_id};"))


def early_lines(plan: post_data.Plan) -> list[str]:
    return [each.list_line for each in plan.early()]


def test_each_entry_gets_its_statement_alone_and_the_tables_it_names():
    plan = post_data.plan(LISTING, SCRIPT)
    by_line = {each.list_line: each for each in plan.entries}
    fk = by_line[line(3263)]
    assert fk.kind == "FK CONSTRAINT"
    assert fk.tables == {"public.events", "public.escrows"}
    assert fk.sql == (
        "ALTER TABLE ONLY public.events\n"
        "    ADD CONSTRAINT events_escrow_id_fkey FOREIGN KEY (escrow_id) REFERENCES public.escrows(id);"
    )
    assert by_line[line(3270)].tables == {'public."Odd Table"'}
    # the last entry's text ends at the script's end: no comment or meta-command is kept
    assert (
        by_line[line(3280)].sql
        == "CREATE RULE escrows_rule AS ON DELETE TO public.escrows DO INSTEAD NOTHING;"
    )
    assert plan.settings == ["SET statement_timeout = 0;"]
    assert plan.direct


def test_what_cannot_be_placed_for_sure_is_left_for_the_end_in_listing_order():
    plan = post_data.plan(LISTING, SCRIPT)
    early = early_lines(plan)
    assert line(3280) not in early  # a rule: not an early type
    assert line(3290) not in early  # no SQL found for it
    assert plan.rest(early) == [line(3280), line(3290)]
    assert len(early) == 8


def test_two_entries_described_alike_are_both_left_for_the_end():
    twice = SCRIPT.replace(
        "-- Name: escrows_buyer_idx; Type: INDEX",
        "-- Name: escrows_buyer_idx; Type: INDEX; Schema: public; Owner: stellar\n--\n\n"
        "CREATE INDEX escrows_buyer_idx ON public.escrows (id);\n\n--\n-- Name: escrows_buyer_idx; Type: INDEX",
    )
    plan = post_data.plan(LISTING, twice)
    assert line(3245) not in early_lines(plan)
    assert line(3247) in early_lines(plan)


def test_a_script_that_switches_settings_between_entries_leaves_everything_to_pg_restore():
    switching = SCRIPT.replace(
        "CREATE INDEX escrows_buyer_idx", "SET default_tablespace = fast;\n\nCREATE INDEX escrows_buyer_idx"
    )
    plan = post_data.plan(LISTING, switching)
    assert not plan.direct
    assert plan.early() == []
    assert plan.rest([]) == [each.list_line for each in plan.entries]
    # the default tablespace pg_restore sets before its first entry is no switch
    assert post_data.plan(
        LISTING, SCRIPT.replace("SET statement_timeout = 0;", "SET default_tablespace = '';")
    ).direct


ORDINARY = frozenset({"public.accounts", "public.escrows", "public.events", 'public."Odd Table"'})


def test_a_plain_key_of_an_ordinary_table_is_its_unique_index_then_the_constraint_on_it():
    plan = post_data.plan(LISTING, SCRIPT, ordinary_tables=ORDINARY)
    steps = plan.early()
    index = next(each for each in steps if each.sql.startswith("CREATE UNIQUE INDEX events_pkey"))
    assert index.sql == "CREATE UNIQUE INDEX events_pkey ON public.events USING btree (id);"
    assert (index.kind, index.list_line, index.tables) == ("INDEX", "", frozenset({"public.events"}))
    assert index.describe().endswith(
        "(a step of: ALTER TABLE ONLY public.events ADD CONSTRAINT events_pkey PRIMARY KEY (id);)"
    )
    key = next(each for each in steps if each.list_line == line(3256))
    assert key.kind == "CONSTRAINT" and key.needs == index
    assert key.describe().endswith(
        "(a step of: ALTER TABLE ONLY public.events ADD CONSTRAINT events_pkey PRIMARY KEY (id);)"
    )
    assert (
        key.sql
        == "ALTER TABLE ONLY public.events\n    ADD CONSTRAINT events_pkey PRIMARY KEY USING INDEX events_pkey;"
    )
    assert len(steps) == 8 + 3  # three keys, each one step more
    # what is left for pg_restore is still told in the archive's own entries
    assert plan.rest([each.list_line for each in steps if each.list_line]) == [line(3280), line(3290)]


def test_a_key_is_built_whole_on_a_table_not_known_ordinary_or_with_options():
    whole = post_data.plan(LISTING, SCRIPT, ordinary_tables=frozenset({"public.escrows"})).early()
    assert [each for each in whole if each.list_line == line(3256)][
        0
    ].needs is None  # events: maybe partitioned
    for options in (
        "PRIMARY KEY (id) DEFERRABLE",
        "PRIMARY KEY (id) WITH (fillfactor='50')",
        "UNIQUE NULLS NOT DISTINCT (id)",
    ):
        script = SCRIPT.replace(
            "ADD CONSTRAINT events_pkey PRIMARY KEY (id);", f"ADD CONSTRAINT events_pkey {options};"
        )
        steps = post_data.plan(LISTING, script, ordinary_tables=ORDINARY).early()
        key = next(each for each in steps if each.list_line == line(3256))
        assert key.needs is None and options in key.sql
        assert not any(each.sql.startswith("CREATE UNIQUE INDEX events_pkey") for each in steps)


def run_all(schedule: post_data.Schedule) -> list[list[str]]:
    """Start everything that may start, finish it all, again: the waves, by list line."""
    waves = []
    while not schedule.finished():
        wave = []
        while (entry := schedule.next()) is not None:
            wave.append(entry)
        assert wave, "nothing may start, yet entries wait"
        for entry in wave:
            schedule.done(entry)
        waves.append([each.list_line for each in wave])
    return waves


def test_an_entry_waits_until_every_table_it_names_is_loaded():
    schedule = post_data.Schedule(post_data.plan(LISTING, SCRIPT).early())
    assert schedule.next() is None
    schedule.loaded.add("public.events")
    events_pkey = schedule.next()
    assert events_pkey is not None and events_pkey.list_line == line(3256)
    schedule.done(events_pkey)
    assert schedule.next().list_line == line(3254)  # its index
    assert schedule.next() is None  # the foreign key also names escrows, not loaded yet
    schedule.loaded.add("public.escrows")
    started = []
    while (entry := schedule.next()) is not None:
        started.append(entry.list_line)
    assert started == [line(3247)]  # escrows' key; its index cannot share the table with it


def test_keys_go_first_index_builds_share_a_table_and_a_foreign_key_waits_for_its_tables_keys():
    schedule = post_data.Schedule(post_data.plan(LISTING, SCRIPT).early())
    schedule.all_loaded = True  # tables with no data at all are never reported loaded
    waves = run_all(schedule)
    assert waves[0] == [line(3242), line(3247), line(3256), line(3270)]  # keys first, one per table
    assert waves[1] == [line(3245), line(3254)]
    assert waves[2] == [line(3263)]  # needs escrows' key, and conflicts with events' index
    assert waves[3] == [line(3262)]  # shares escrows with the other foreign key


def test_a_keys_index_builds_beside_the_other_index_builds_and_its_constraint_follows():
    schedule = post_data.Schedule(post_data.plan(LISTING, SCRIPT, ordinary_tables=ORDINARY).early())
    schedule.all_loaded = True
    waves = []
    while not schedule.finished():
        wave = []
        while (entry := schedule.next()) is not None:
            wave.append(entry)
        for entry in wave:
            schedule.done(entry)
        waves.append([each.list_line or each.sql.split(" ON ")[0] for each in wave])
    assert waves[0] == [
        "CREATE UNIQUE INDEX accounts_pkey",
        "CREATE UNIQUE INDEX escrows_pkey",
        "CREATE UNIQUE INDEX events_pkey",
        line(3245),
        line(3254),
        line(3270),
    ]
    assert waves[1] == [line(3242), line(3247), line(3256)]  # each key once its index is built
    assert waves[2:] == [[line(3263)], [line(3262)]]


def test_two_index_builds_on_one_table_run_together_a_key_and_an_index_do_not():
    index_a = post_data.Entry(
        "1; 1 1 INDEX public a o", "INDEX", frozenset({"public.t"}), "CREATE INDEX a ON public.t (x);"
    )
    index_b = post_data.Entry(
        "2; 1 1 INDEX public b o", "INDEX", frozenset({"public.t"}), "CREATE INDEX b ON public.t (y);"
    )
    key = post_data.Entry(
        "3; 1 1 CONSTRAINT public t k o", "CONSTRAINT", frozenset({"public.t"}), "ALTER TABLE ...;"
    )
    assert not index_a.blocks(index_b)
    assert key.blocks(index_a) and index_a.blocks(key)
    other = post_data.Entry(
        "4; 1 1 CONSTRAINT public u k o", "CONSTRAINT", frozenset({"public.u"}), "ALTER TABLE ...;"
    )
    assert not key.blocks(other)


def test_a_list_file_has_one_entry_per_line():
    assert post_data.list_file_text(["1; 2 3 INDEX public a o", "4; 5 6 INDEX public b o"]) == (
        "1; 2 3 INDEX public a o\n4; 5 6 INDEX public b o\n"
    )


PARTITIONED_LISTING = """3300; 2606 16600 FK CONSTRAINT ledger entries entries_customer_id_fkey stellar
3301; 1259 16601 INDEX ledger entries_customer_idx stellar
3302; 2620 16602 TRIGGER ledger entries entries_audit stellar
3303; 0 0 INDEX ATTACH ledger entries_2026h1_pkey stellar
"""
PARTITIONED_SCRIPT = """--
-- Name: entries entries_customer_id_fkey; Type: FK CONSTRAINT; Schema: ledger; Owner: stellar
--

ALTER TABLE ledger.entries
    ADD CONSTRAINT entries_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES ledger.customers(id);


--
-- Name: entries_customer_idx; Type: INDEX; Schema: ledger; Owner: stellar
--

CREATE INDEX entries_customer_idx ON ONLY ledger.entries USING btree (customer_id, booked_on);


--
-- Name: entries entries_audit; Type: TRIGGER; Schema: ledger; Owner: stellar
--

CREATE TRIGGER entries_audit AFTER INSERT ON ledger.entries FOR EACH ROW EXECUTE FUNCTION ledger.remember_change();


--
-- Name: entries_2026h1_pkey; Type: INDEX ATTACH; Schema: ledger; Owner: stellar
--

ALTER INDEX ledger.entries_pkey ATTACH PARTITION ledger.entries_2026h1_pkey;
"""


def test_a_partitioned_tables_statements_name_their_table_with_or_without_only():
    """pg_dump writes a partitioned table's foreign key as ALTER TABLE without ONLY: its table counts."""
    plan = post_data.plan(PARTITIONED_LISTING, PARTITIONED_SCRIPT)
    tables = {entry.list_line.split()[-2]: entry.tables for entry in plan.entries}
    assert tables["entries_customer_id_fkey"] == {"ledger.entries", "ledger.customers"}
    assert tables["entries_customer_idx"] == {"ledger.entries"}
    assert tables["entries_audit"] == {"ledger.entries"}
    # the partitioned table is never loaded itself (its rows are its partitions'): its entries wait
    # for every table to be loaded, and an INDEX ATTACH is left to pg_restore
    schedule = post_data.Schedule(plan.early())
    schedule.loaded = {"ledger.customers", "ledger.entries_2026h1"}
    assert schedule.next() is None
    schedule.all_loaded = True
    assert schedule.next() is not None
    assert [e.list_line for e in plan.entries if not e.early] == [PARTITIONED_LISTING.splitlines()[3]]
