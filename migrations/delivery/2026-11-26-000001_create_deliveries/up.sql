-- Deliveries: one per rental, from request to the customer's door (or cancellation).
CREATE TABLE deliveries (
    id           uuid        PRIMARY KEY,
    rental_id    uuid        NOT NULL UNIQUE,
    customer_id  uuid        NOT NULL,
    product_id   uuid        NOT NULL,
    address      text        NOT NULL CHECK (char_length(address) BETWEEN 1 AND 500),
    status       text        NOT NULL CHECK (status IN ('REQUESTED', 'SHIPPING', 'DELIVERED', 'CANCELLED')),
    requested_at timestamptz NOT NULL,
    shipped_at   timestamptz,
    delivered_at timestamptz,
    cancelled_at timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- The operators' queue: deliveries of one status, oldest first.
CREATE INDEX deliveries_by_status ON deliveries (status, id);
