-- What inventory did for each delivery, so that start and cancel events apply exactly
-- once whatever order they arrive in:
--   TAKEN     one unit left the shelf for it
--   SHORT     it started with no unit on hand (see stock_shortages)
--   RETURNED  it was cancelled after it started; its unit is back (or its shortage dropped)
--   CANCELLED it was cancelled before its start reached inventory; a late start does nothing
CREATE TABLE shipments (
    delivery_id uuid        PRIMARY KEY,
    product_id  uuid        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('TAKEN', 'SHORT', 'RETURNED', 'CANCELLED')),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
