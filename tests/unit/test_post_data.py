"""Placing an archive's indexes and constraints: which can be built while other tables load."""

from __future__ import annotations

from stellar_ops import post_data

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


def test_an_entry_is_ready_once_every_table_it_names_is_loaded():
    plan = post_data.plan(LISTING, SCRIPT)
    ready = plan.ready(["public.accounts", "public.escrows", "public.trades"])
    assert ready == [line(3242), line(3247), line(3245), line(3262)]
    # the events foreign key names escrows too: it waits for both
    assert line(3263) not in plan.ready(["public.events"])
    assert line(3263) in plan.ready(["public.events", "public.escrows"])
    assert line(3270) in plan.ready(['public."Odd Table"'])


def test_what_cannot_be_placed_for_sure_waits_for_the_end():
    plan = post_data.plan(LISTING, SCRIPT)
    everything = ["public.accounts", "public.escrows", "public.events", "public.trades", 'public."Odd Table"']
    ready = plan.ready(everything)
    assert line(3280) not in ready  # a rule: not an early type
    assert line(3290) not in ready  # no SQL found for it
    assert plan.rest(ready) == [line(3280), line(3290)]


def test_the_rest_keeps_the_listing_order():
    plan = post_data.plan(LISTING, SCRIPT)
    early = plan.ready(["public.accounts", "public.escrows"])
    rest = plan.rest(early)
    assert rest == [each.list_line for each in plan.entries if each.list_line not in early]
    assert len(rest) + len(early) == len(plan.entries) == 10


def test_two_entries_described_alike_are_both_left_for_the_end():
    twice = SCRIPT.replace(
        "-- Name: escrows_buyer_idx; Type: INDEX",
        "-- Name: escrows_buyer_idx; Type: INDEX; Schema: public; Owner: stellar\n--\n\n"
        "CREATE INDEX escrows_buyer_idx ON public.escrows (id);\n\n--\n-- Name: escrows_buyer_idx; Type: INDEX",
    )
    plan = post_data.plan(LISTING, twice)
    assert line(3245) not in plan.ready(["public.escrows"])
    assert line(3247) in plan.ready(["public.escrows"])


def test_a_list_file_has_one_entry_per_line():
    assert post_data.list_file_text(["1; 2 3 INDEX public a o", "4; 5 6 INDEX public b o"]) == (
        "1; 2 3 INDEX public a o\n4; 5 6 INDEX public b o\n"
    )
