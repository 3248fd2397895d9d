-- Monthly billing: a card on file per rental, an invoice per period (and one for an
-- early termination's fee), every attempt to charge one, and the simulated card
-- network's own ledger. docs/billing.md has the rules.

-- The card network (simulated inside payment, the only simulated part of the system).
-- It keeps what a processor keeps about a tokenized card: never the number, only the
-- token, brand, last four digits, expiry, and (this being a simulation) how the card
-- behaves. The ledger of captures is keyed by the merchant's idempotency key: asking
-- twice with one key captures once and answers the same.
CREATE TABLE network_cards (
    token      text        PRIMARY KEY,
    brand      text        NOT NULL,
    last4      text        NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month  integer     NOT NULL CHECK (exp_month BETWEEN 1 AND 12),
    exp_year   integer     NOT NULL CHECK (exp_year BETWEEN 2000 AND 2200),
    -- APPROVE: every charge; DECLINE: none; DECLINE_RECURRING: only the customer's own
    -- charge at rent, no later charge from the card on file.
    behaviour  text        NOT NULL CHECK (behaviour IN ('APPROVE', 'DECLINE', 'DECLINE_RECURRING')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE network_captures (
    idempotency_key text        PRIMARY KEY,
    token           text        NOT NULL REFERENCES network_cards (token),
    amount          integer     NOT NULL CHECK (amount > 0),
    approved        boolean     NOT NULL,
    decline_reason  text,
    captured_at     timestamptz NOT NULL,
    refunded_at     timestamptz,
    CHECK (approved = (decline_reason IS NULL)),
    CHECK (approved OR refunded_at IS NULL)
);

-- The card on file of each rental (tokens only), and every change of it.
CREATE TABLE payment_methods (
    rental_id   uuid        PRIMARY KEY,
    customer_id uuid        NOT NULL,
    token       text        NOT NULL REFERENCES network_cards (token),
    brand       text        NOT NULL,
    last4       text        NOT NULL CHECK (last4 ~ '^[0-9]{4}$'),
    exp_month   integer     NOT NULL,
    exp_year    integer     NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE TABLE payment_method_changes (
    id         uuid        PRIMARY KEY,
    rental_id  uuid        NOT NULL,
    brand      text        NOT NULL,
    last4      text        NOT NULL,
    changed_at timestamptz NOT NULL
);
CREATE INDEX payment_method_changes_by_rental ON payment_method_changes (rental_id, changed_at);

-- Invoices: one per period of a rental (period 1 is the charge at rent), and at most
-- one termination fee.
--   PENDING   due, not charged yet (or its first attempt is under way)
--   PAID      charged
--   FAILED    declined; tried again at next_attempt_at, or not at all once it is NULL
--   VOID      written off by an operator: never charged
--   REFUNDED  paid, then paid back (period 1 of a rental cancelled before delivery)
CREATE TABLE invoices (
    id              uuid        PRIMARY KEY,
    rental_id       uuid        NOT NULL,
    customer_id     uuid        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('PERIOD', 'TERMINATION_FEE')),
    period          integer     CHECK (period >= 1),
    period_start    timestamptz,
    period_end      timestamptz,
    amount          integer     NOT NULL CHECK (amount > 0),
    status          text        NOT NULL CHECK (status IN ('PENDING', 'PAID', 'FAILED', 'VOID', 'REFUNDED')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    first_failed_at timestamptz,
    failure_reason  text,
    paid_at         timestamptz,
    voided_at       timestamptz,
    refunded_at     timestamptz,
    -- The charge at rent pays period 1: its payment.
    payment_id      uuid        UNIQUE,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    CHECK ((kind = 'PERIOD') = (period IS NOT NULL)),
    CHECK ((status IN ('PAID', 'REFUNDED')) = (paid_at IS NOT NULL)),
    CHECK ((status = 'VOID') = (voided_at IS NOT NULL)),
    CHECK ((status = 'REFUNDED') = (refunded_at IS NOT NULL)),
    CHECK (next_attempt_at IS NULL OR status IN ('PENDING', 'FAILED'))
);
-- Each (rental, period) is invoiced once, ever; so is a termination fee.
CREATE UNIQUE INDEX invoices_one_per_period ON invoices (rental_id, period) WHERE kind = 'PERIOD';
CREATE UNIQUE INDEX invoices_one_termination_fee ON invoices (rental_id) WHERE kind = 'TERMINATION_FEE';
CREATE INDEX invoices_by_rental ON invoices (rental_id, created_at);
-- The collector's work list, and the operators' list by status.
CREATE INDEX invoices_due ON invoices (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX invoices_by_status ON invoices (status, id);

-- Every attempt to charge an invoice. An attempt is recorded (with the idempotency key
-- it will use) before the network is asked, and at most one attempt per invoice is
-- open at a time: whoever finds it open asks again with the same key, so an attempt
-- interrupted by a crash is finished, never doubled.
CREATE TABLE invoice_attempts (
    invoice_id      uuid        NOT NULL REFERENCES invoices (id),
    attempt         integer     NOT NULL CHECK (attempt >= 1),
    idempotency_key text        NOT NULL UNIQUE,
    token           text        NOT NULL,
    started_at      timestamptz NOT NULL,
    outcome         text        CHECK (outcome IN ('APPROVED', 'DECLINED')),
    decline_reason  text,
    finished_at     timestamptz,
    PRIMARY KEY (invoice_id, attempt),
    CHECK ((outcome IS NULL) = (finished_at IS NULL))
);
CREATE UNIQUE INDEX invoice_attempts_one_open ON invoice_attempts (invoice_id) WHERE outcome IS NULL;

-- Orders the changes of each rental's account for the services that follow them.
CREATE SEQUENCE billing_seq;

-- Rentals paid before billing existed: their first charge is their period 1 invoice.
INSERT INTO invoices (id, rental_id, customer_id, kind, period, amount, status, attempts, paid_at, refunded_at,
                      payment_id, created_at, updated_at)
SELECT id, rental_id, customer_id, 'PERIOD', 1, amount, status, 1, paid_at, refunded_at, id, paid_at,
       COALESCE(refunded_at, paid_at)
FROM payments;
