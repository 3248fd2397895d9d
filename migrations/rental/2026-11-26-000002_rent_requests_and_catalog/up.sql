-- What rental knows of the catalog, kept up to date by inventory's product events, so
-- renting works while inventory is down.
CREATE TABLE catalog (
    product_id  uuid        PRIMARY KEY,
    name        text        NOT NULL,
    monthly_fee integer     NOT NULL CHECK (monthly_fee > 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per (customer, idempotency key): what was asked, which rental id it was
-- given, and how far it got.
--   PENDING    the charge may or may not have happened; the rental is not committed
--   COMPLETED  the rental is committed (in the same transaction as this state)
--   VOIDING    given up on: the charge is being called off
--   ABANDONED  the charge was called off (refunded, or made impossible)
CREATE TABLE rent_requests (
    customer_id     uuid        NOT NULL,
    idempotency_key text        NOT NULL CHECK (char_length(idempotency_key) BETWEEN 1 AND 100),
    request_hash    text        NOT NULL,
    rental_id       uuid        NOT NULL UNIQUE,
    state           text        NOT NULL CHECK (state IN ('PENDING', 'COMPLETED', 'VOIDING', 'ABANDONED')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, idempotency_key)
);

-- The reconciler's work list: requests stuck before completion.
CREATE INDEX rent_requests_unfinished ON rent_requests (updated_at) WHERE state IN ('PENDING', 'VOIDING');

-- Every rental points at its successful charge.
ALTER TABLE rentals ADD COLUMN payment_id uuid NOT NULL UNIQUE;
