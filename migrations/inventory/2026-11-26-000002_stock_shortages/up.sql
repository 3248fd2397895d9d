-- Shipments that started while the product had no unit on hand. Stock never goes
-- negative: the shipment waits here, and the next restock serves the oldest first.
CREATE TABLE stock_shortages (
    delivery_id  uuid        PRIMARY KEY,
    product_id   uuid        NOT NULL REFERENCES products (id),
    rental_id    uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    allocated_at timestamptz
);

CREATE INDEX stock_shortages_open ON stock_shortages (product_id, created_at) WHERE allocated_at IS NULL;
