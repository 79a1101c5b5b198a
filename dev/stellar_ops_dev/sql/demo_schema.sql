-- The StellarEscrow schema used by the local stack, the tests and the benchmarks.
CREATE TABLE IF NOT EXISTS accounts (
    id               bigserial PRIMARY KEY,
    stellar_account  char(56)    NOT NULL UNIQUE,
    role             text        NOT NULL CHECK (role IN ('buyer', 'seller', 'arbiter')),
    kyc_status       text        NOT NULL DEFAULT 'pending',
    home_domain      text,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS escrows (
    id               bigserial PRIMARY KEY,
    buyer_account    char(56)      NOT NULL,
    seller_account   char(56)      NOT NULL,
    arbiter_account  char(56),
    asset_code       varchar(12)   NOT NULL,
    asset_issuer     char(56),
    amount           numeric(20,7) NOT NULL CHECK (amount > 0),
    status           text          NOT NULL CHECK (status IN ('pending','funded','released','refunded','disputed','expired')),
    memo             text,
    created_at       timestamptz   NOT NULL,
    funded_at        timestamptz,
    released_at      timestamptz,
    deadline         timestamptz   NOT NULL
);
CREATE INDEX IF NOT EXISTS escrows_status_idx ON escrows (status);
CREATE INDEX IF NOT EXISTS escrows_buyer_idx ON escrows (buyer_account);

CREATE TABLE IF NOT EXISTS trades (
    id               bigserial PRIMARY KEY,
    escrow_id        bigint        NOT NULL REFERENCES escrows (id),
    buyer_account    char(56)      NOT NULL,
    seller_account   char(56)      NOT NULL,
    base_asset       varchar(12)   NOT NULL,
    counter_asset    varchar(12)   NOT NULL,
    amount           numeric(20,7) NOT NULL,
    price            numeric(20,7) NOT NULL,
    status           text          NOT NULL CHECK (status IN ('open','matched','settled','cancelled','failed')),
    tx_hash          char(64),
    ledger           bigint,
    created_at       timestamptz   NOT NULL,
    settled_at       timestamptz
);
CREATE INDEX IF NOT EXISTS trades_escrow_idx ON trades (escrow_id);
CREATE INDEX IF NOT EXISTS trades_created_idx ON trades (created_at);
CREATE INDEX IF NOT EXISTS trades_open_idx ON trades (status) WHERE status IN ('open', 'matched');

CREATE TABLE IF NOT EXISTS events (
    id               bigserial PRIMARY KEY,
    escrow_id        bigint      NOT NULL REFERENCES escrows (id),
    event_type       text        NOT NULL,
    payload          jsonb       NOT NULL,
    ledger           bigint      NOT NULL,
    tx_hash          char(64),
    created_at       timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS events_escrow_created_idx ON events (escrow_id, created_at);
CREATE INDEX IF NOT EXISTS events_type_idx ON events (event_type);

CREATE TABLE IF NOT EXISTS api_keys (
    id               bigserial PRIMARY KEY,
    key_set          text        NOT NULL,
    key_fingerprint  char(64)    NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    revoked_at       timestamptz
);
