-- Each product's filter-care interval, and units coming home with their pickup.
ALTER TABLE products ADD COLUMN care_interval_months integer NOT NULL DEFAULT 4
    CHECK (care_interval_months BETWEEN 1 AND 24);

--   COLLECTED  the unit of a delivered rental came back with its pickup
ALTER TABLE shipments DROP CONSTRAINT shipments_state_check;
ALTER TABLE shipments ADD CONSTRAINT shipments_state_check
    CHECK (state IN ('TAKEN', 'SHORT', 'RETURNED', 'CANCELLED', 'COLLECTED'));

--   COLLECTED  the unit of a delivered rental came back with its pickup (delivery_id)
ALTER TABLE stock_movements DROP CONSTRAINT stock_movements_reason_check;
ALTER TABLE stock_movements ADD CONSTRAINT stock_movements_reason_check
    CHECK (reason IN ('CREATED', 'RESTOCKED', 'TAKEN', 'RETURNED', 'COLLECTED'));
ALTER TABLE stock_movements DROP CONSTRAINT stock_movements_check;
ALTER TABLE stock_movements ADD CONSTRAINT stock_movements_check
    CHECK ((reason IN ('TAKEN', 'RETURNED', 'COLLECTED')) = (delivery_id IS NOT NULL));
