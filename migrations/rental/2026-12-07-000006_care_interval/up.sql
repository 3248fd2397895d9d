-- Rental's copy of the catalog knows each product's care interval, so that a rental's
-- activation tells field service how often to visit.
ALTER TABLE catalog ADD COLUMN care_interval_months integer NOT NULL DEFAULT 4
    CHECK (care_interval_months BETWEEN 1 AND 24);
