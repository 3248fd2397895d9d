ALTER TABLE deliveries DROP CONSTRAINT delivered_only_with_a_unit;
ALTER TABLE deliveries ADD COLUMN waiting_for_stock boolean NOT NULL DEFAULT false;
UPDATE deliveries SET waiting_for_stock = (unit = 'SHORT');
ALTER TABLE deliveries DROP COLUMN unit;
