ALTER TABLE stock_movements DROP CONSTRAINT stock_movements_check;
ALTER TABLE stock_movements ADD CONSTRAINT stock_movements_check
    CHECK ((reason IN ('TAKEN', 'RETURNED')) = (delivery_id IS NOT NULL));
ALTER TABLE stock_movements DROP CONSTRAINT stock_movements_reason_check;
ALTER TABLE stock_movements ADD CONSTRAINT stock_movements_reason_check
    CHECK (reason IN ('CREATED', 'RESTOCKED', 'TAKEN', 'RETURNED'));
ALTER TABLE shipments DROP CONSTRAINT shipments_state_check;
ALTER TABLE shipments ADD CONSTRAINT shipments_state_check CHECK (state IN ('TAKEN', 'SHORT', 'RETURNED', 'CANCELLED'));
ALTER TABLE products DROP COLUMN care_interval_months;
