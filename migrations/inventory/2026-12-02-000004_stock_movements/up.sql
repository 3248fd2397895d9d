-- Every change of a product's stock, in the transaction that makes it: the ledger an
-- audit (or an operator) reconciles stock against. A product's stock is always the
-- sum of its movements.
--   CREATED    the initial stock of a new product
--   RESTOCKED  an operator's restock
--   TAKEN      one unit left for a delivery (delivery_id)
--   RETURNED   the unit of a cancelled delivery came back (delivery_id)
CREATE TABLE stock_movements (
    id          uuid        PRIMARY KEY,
    product_id  uuid        NOT NULL REFERENCES products (id),
    change      integer     NOT NULL,
    reason      text        NOT NULL CHECK (reason IN ('CREATED', 'RESTOCKED', 'TAKEN', 'RETURNED')),
    delivery_id uuid,
    at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((reason IN ('TAKEN', 'RETURNED')) = (delivery_id IS NOT NULL))
);

CREATE INDEX stock_movements_by_product ON stock_movements (product_id, at);
-- A delivery takes at most one unit and gives back at most one.
CREATE UNIQUE INDEX stock_movements_once_per_delivery ON stock_movements (delivery_id, reason) WHERE delivery_id IS NOT NULL;

-- Products that existed before the ledger start from their stock at that moment.
INSERT INTO stock_movements (id, product_id, change, reason, at)
SELECT gen_random_uuid(), id, stock, 'CREATED', now() FROM products;
