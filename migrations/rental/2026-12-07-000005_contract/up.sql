-- A rental is a contract over months. The term starts at delivery; rental owns it
-- (when each period starts, when the term ends, extensions, the end) and tells payment
-- when a period is due. docs/billing.md has the rules.
ALTER TABLE rentals DROP CONSTRAINT rentals_status_check;
ALTER TABLE rentals ADD CONSTRAINT rentals_status_check
    CHECK (status IN ('ACCEPTED', 'ACTIVE', 'PAST_DUE', 'CANCELLED', 'TERMINATED', 'COMPLETED'));
-- Extensions add 1-60 months at a time.
ALTER TABLE rentals DROP CONSTRAINT rentals_months_check;
ALTER TABLE rentals ADD CONSTRAINT rentals_months_check CHECK (months BETWEEN 1 AND 1200);
ALTER TABLE rentals
    -- The term: its first instant (the delivery) and the first instant after it.
    ADD COLUMN term_starts_at  timestamptz,
    ADD COLUMN term_ends_at    timestamptz,
    -- The next period to be announced as due, and when it starts (NULL: every period
    -- of the term has been announced). Period 1 is paid at rent.
    ADD COLUMN next_period     integer     NOT NULL DEFAULT 2,
    ADD COLUMN next_period_at  timestamptz,
    -- Periods paid so far, as payment reported them.
    ADD COLUMN periods_paid    integer     NOT NULL DEFAULT 1,
    -- The newest change of the rental's account that has been applied (payment's seq).
    ADD COLUMN billing_seq     bigint      NOT NULL DEFAULT 0,
    -- How a delivered rental ended, when, and the fee it cost.
    ADD COLUMN end_reason      text        CHECK (end_reason IN ('COMPLETED', 'TERMINATED_BY_CUSTOMER',
                                                                 'TERMINATED_BY_OPERATOR', 'TERMINATED_FOR_NON_PAYMENT')),
    ADD COLUMN ended_at        timestamptz,
    ADD COLUMN termination_fee integer     CHECK (termination_fee >= 0),
    ADD CONSTRAINT a_term_starts_and_ends_together CHECK ((term_starts_at IS NULL) = (term_ends_at IS NULL)),
    ADD CONSTRAINT an_end_has_a_reason CHECK ((ended_at IS NULL) = (end_reason IS NULL)),
    ADD CONSTRAINT ended_statuses_have_an_end CHECK ((status IN ('TERMINATED', 'COMPLETED')) = (ended_at IS NOT NULL));

-- The contract clock's work lists: periods that start, terms that end.
CREATE INDEX rentals_with_a_period_due ON rentals (next_period_at)
    WHERE status IN ('ACTIVE', 'PAST_DUE') AND next_period_at IS NOT NULL;
CREATE INDEX rentals_with_a_term_ending ON rentals (term_ends_at)
    WHERE status = 'ACTIVE' AND next_period_at IS NULL;

-- Each extension, for the history (EXTENDED) and its rebuild.
CREATE TABLE rental_extensions (
    id           uuid        PRIMARY KEY,
    rental_id    uuid        NOT NULL REFERENCES rentals (id),
    added_months integer     NOT NULL CHECK (added_months BETWEEN 1 AND 60),
    months_after integer     NOT NULL,
    at           timestamptz NOT NULL
);
CREATE INDEX rental_extensions_by_rental ON rental_extensions (rental_id, at);

-- The timeline now holds repeated steps (a charge per period, a failure per attempt):
-- a step is keyed by (rental, kind, occurrence), where occurrence is '' for a step that
-- happens once, 'period:3' for the third month's charge, 'invoice:<id>:<attempt>' for
-- a declined attempt, and so on. The same step learned twice is still one entry.
ALTER TABLE rental_timeline DROP CONSTRAINT rental_timeline_pkey;
ALTER TABLE rental_timeline DROP CONSTRAINT rental_timeline_kind_check;
ALTER TABLE rental_timeline
    ADD COLUMN occurrence text    NOT NULL DEFAULT '',
    ADD COLUMN period     integer,
    ADD COLUMN invoice_id uuid,
    ADD COLUMN visit_id   uuid;
ALTER TABLE rental_timeline ADD PRIMARY KEY (rental_id, kind, occurrence);

-- The read model carries the contract too, so myRentals stays one indexed read.
ALTER TABLE rental_history
    ADD COLUMN term_starts_at  timestamptz,
    ADD COLUMN term_ends_at    timestamptz,
    ADD COLUMN next_period_at  timestamptz,
    ADD COLUMN periods_paid    integer     NOT NULL DEFAULT 1,
    ADD COLUMN end_reason      text,
    ADD COLUMN ended_at        timestamptz,
    ADD COLUMN termination_fee integer;
