-- A database like a production one, with every kind of object the drill must bring back:
-- roles with grants and default privileges, large objects, a partitioned table with a foreign
-- key, triggers, views, a materialized view, sequences (serial, identity, a standalone one moved
-- on), CHECK, UNIQUE and EXCLUDE constraints, functions, enum/domain/composite/range types and
-- an extension. Run as a superuser in a fresh database owned by :"owner", who then owns it all.

CREATE EXTENSION IF NOT EXISTS pgcrypto;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_reader') THEN
        CREATE ROLE app_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'app_writer') THEN
        CREATE ROLE app_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'Audit Team') THEN
        CREATE ROLE "Audit Team" NOLOGIN;
    END IF;
END $$;
GRANT app_reader TO app_writer;
ALTER ROLE app_reader SET statement_timeout = '30s';

SET ROLE :"owner";
CREATE SCHEMA ledger;

CREATE TYPE ledger.entry_kind AS ENUM ('credit', 'debit', 'fee');
CREATE DOMAIN ledger.positive_amount AS numeric(20, 7) CHECK (VALUE > 0) NOT NULL;
CREATE TYPE ledger.money_pair AS (amount numeric(20, 7), asset varchar(12));
CREATE TYPE ledger.price_band AS RANGE (subtype = numeric);

CREATE TABLE ledger.customers (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    handle      text NOT NULL UNIQUE,
    email       text CHECK (email LIKE '%@%'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger.entries (
    id          bigserial,
    customer_id bigint NOT NULL REFERENCES ledger.customers (id),
    kind        ledger.entry_kind NOT NULL,
    amount      ledger.positive_amount,
    pair        ledger.money_pair,
    booked_on   date NOT NULL,
    note        text,
    PRIMARY KEY (id, booked_on)
) PARTITION BY RANGE (booked_on);
CREATE TABLE ledger.entries_2026h1 PARTITION OF ledger.entries FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
CREATE TABLE ledger.entries_2026h2 PARTITION OF ledger.entries FOR VALUES FROM ('2026-07-01') TO ('2027-01-01');
CREATE INDEX entries_customer_idx ON ledger.entries (customer_id, booked_on);

CREATE TABLE ledger.reservations (
    id      serial PRIMARY KEY,
    room    int NOT NULL,
    during  tsrange NOT NULL,
    EXCLUDE USING gist (during WITH &&)
);

CREATE TABLE ledger.audit_log (
    id         bigserial PRIMARY KEY,
    table_name text NOT NULL,
    row_id     bigint,
    at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger.documents (
    id      serial PRIMARY KEY,
    title   text NOT NULL,
    content oid NOT NULL
);

-- A table big enough for the loader to share it out across sessions (with small thresholds).
CREATE TABLE ledger.bulk (
    id      bigint PRIMARY KEY,
    payload text NOT NULL,
    tag     int NOT NULL
);

CREATE SEQUENCE ledger.invoice_numbers START 1000 INCREMENT 7 MAXVALUE 9999999 CYCLE;

CREATE FUNCTION ledger.remember_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ledger.audit_log (table_name, row_id) VALUES (TG_TABLE_NAME, NEW.id);
    RETURN NEW;
END $$;
CREATE FUNCTION ledger.balance(customer bigint) RETURNS numeric LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(CASE WHEN kind = 'credit' THEN amount ELSE -amount END), 0)
    FROM ledger.entries WHERE customer_id = customer
$$;
CREATE TRIGGER customers_audit AFTER INSERT ON ledger.customers
    FOR EACH ROW EXECUTE FUNCTION ledger.remember_change();
CREATE TRIGGER entries_audit AFTER INSERT ON ledger.entries
    FOR EACH ROW EXECUTE FUNCTION ledger.remember_change();

CREATE VIEW ledger.customer_balances AS
    SELECT c.id, c.handle, ledger.balance(c.id) AS balance FROM ledger.customers c;
CREATE MATERIALIZED VIEW ledger.daily_totals AS
    SELECT booked_on, kind, sum(amount) AS total, count(*) AS entries
    FROM ledger.entries GROUP BY booked_on, kind;

INSERT INTO ledger.customers (handle, email)
    SELECT 'customer-' || g, 'c' || g || '@example.org' FROM generate_series(1, 500) g;
INSERT INTO ledger.entries (customer_id, kind, amount, pair, booked_on, note)
    SELECT 1 + (g % 500), (ARRAY['credit', 'debit', 'fee']::ledger.entry_kind[])[1 + g % 3],
           round((1 + random() * 1000)::numeric, 7), ROW(g, 'XLM')::ledger.money_pair,
           date '2026-01-01' + (g % 360), md5(g::text)
    FROM generate_series(1, 6000) g;
INSERT INTO ledger.reservations (room, during)
    SELECT g, tsrange(timestamp '2026-01-01' + g * interval '1 day', timestamp '2026-01-01' + g * interval '1 day' + interval '3 hours')
    FROM generate_series(1, 50) g;
INSERT INTO ledger.bulk (id, payload, tag)
    SELECT g, repeat(md5(g::text), 8), g % 97 FROM generate_series(1, 60000) g;
INSERT INTO ledger.documents (title, content)
    SELECT 'document ' || g, lo_from_bytea(0, convert_to(repeat('page ' || g || ' of the escrow agreement. ', 200 * g), 'UTF8'))
    FROM generate_series(1, 5) g;
SELECT setval('ledger.invoice_numbers', 4242);
REFRESH MATERIALIZED VIEW ledger.daily_totals;

GRANT USAGE ON SCHEMA ledger TO app_reader, "Audit Team";
GRANT SELECT ON ALL TABLES IN SCHEMA ledger TO app_reader;
GRANT INSERT, UPDATE ON ledger.entries, ledger.customers TO app_writer;
GRANT SELECT ON ledger.audit_log TO "Audit Team" WITH GRANT OPTION;
GRANT USAGE ON SEQUENCE ledger.invoice_numbers TO app_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA ledger GRANT SELECT ON TABLES TO app_reader;
COMMENT ON TABLE ledger.entries IS 'every movement of money, by half-year';
