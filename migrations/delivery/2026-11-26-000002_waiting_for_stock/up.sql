-- A shipment that left while inventory had no unit for it is held, visibly, until
-- inventory allocates one (after a restock).
ALTER TABLE deliveries ADD COLUMN waiting_for_stock boolean NOT NULL DEFAULT false;
