-- Rentals: who rents which product, for how long, delivered where, and where it stands.
CREATE TABLE rentals (
    id               uuid        PRIMARY KEY,
    customer_id      uuid        NOT NULL,
    product_id       uuid        NOT NULL,
    months           integer     NOT NULL CHECK (months BETWEEN 1 AND 60),
    -- The fee agreed at rental time, in won; the catalog price may change later.
    monthly_fee      integer     NOT NULL CHECK (monthly_fee > 0),
    delivery_address text        NOT NULL CHECK (char_length(delivery_address) BETWEEN 1 AND 500),
    status           text        NOT NULL CHECK (status IN ('ACCEPTED', 'ACTIVE', 'CANCELLED')),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- "My rentals, newest first": ids are UUIDv7, so id order is creation order.
CREATE INDEX rentals_by_customer ON rentals (customer_id, id DESC);
