ALTER TABLE catalog DROP COLUMN care_interval_months;
