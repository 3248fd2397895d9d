-- Where a delivery's unit stands, as inventory reported it:
--   NONE     not started, so no unit was asked for yet
--   PENDING  started; inventory has not answered yet
--   SHORT    inventory had none: waiting for a restock
--   TAKEN    inventory took a unit for it: it can be completed
-- A delivery is DELIVERED only with its unit TAKEN (docs/events.md, "Stock and
-- deliveries agree").
ALTER TABLE deliveries ADD COLUMN unit text NOT NULL DEFAULT 'NONE'
    CHECK (unit IN ('NONE', 'PENDING', 'SHORT', 'TAKEN'));
UPDATE deliveries SET unit = CASE
    WHEN waiting_for_stock THEN 'SHORT'
    WHEN status IN ('SHIPPING', 'DELIVERED') THEN 'TAKEN'
    ELSE 'NONE' END;
ALTER TABLE deliveries DROP COLUMN waiting_for_stock;
ALTER TABLE deliveries ADD CONSTRAINT delivered_only_with_a_unit CHECK (status <> 'DELIVERED' OR unit = 'TAKEN');
