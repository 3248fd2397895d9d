-- Each kind of step happens at most once in a rental's life, so the timeline is keyed by
-- (rental, kind): the same step learned twice (a redelivered event, or a rebuild from
-- the services' records) is one entry, and the earliest time wins.
DELETE FROM rental_timeline a USING rental_timeline b
 WHERE a.rental_id = b.rental_id AND a.kind = b.kind AND (a.at, a.event_id) > (b.at, b.event_id);
ALTER TABLE rental_timeline DROP CONSTRAINT rental_timeline_pkey;
ALTER TABLE rental_timeline ADD PRIMARY KEY (rental_id, kind);
DROP INDEX rental_timeline_by_rental;

-- The customer's history (CQRS read model): one row per rental with its status and its
-- timeline, so "my rentals" is one indexed read per page.
CREATE TABLE rental_history (
    rental_id        uuid        PRIMARY KEY,
    customer_id      uuid        NOT NULL,
    product_id       uuid        NOT NULL,
    months           integer     NOT NULL,
    monthly_fee      integer     NOT NULL,
    delivery_address text        NOT NULL,
    status           text        NOT NULL,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    -- [{"kind": "PAID", "at": "..."}, ...] in time order
    timeline         jsonb       NOT NULL DEFAULT '[]'
);

CREATE INDEX rental_history_by_customer ON rental_history (customer_id, rental_id DESC);
CREATE INDEX rental_history_by_customer_and_status ON rental_history (customer_id, status, rental_id DESC);
