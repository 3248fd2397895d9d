ALTER TABLE rental_history
    DROP COLUMN term_starts_at, DROP COLUMN term_ends_at, DROP COLUMN next_period_at, DROP COLUMN periods_paid,
    DROP COLUMN end_reason, DROP COLUMN ended_at, DROP COLUMN termination_fee;
DELETE FROM rental_timeline WHERE occurrence <> '';
ALTER TABLE rental_timeline DROP CONSTRAINT rental_timeline_pkey;
ALTER TABLE rental_timeline DROP COLUMN occurrence, DROP COLUMN period, DROP COLUMN invoice_id, DROP COLUMN visit_id;
ALTER TABLE rental_timeline ADD PRIMARY KEY (rental_id, kind);
DROP TABLE rental_extensions;
DROP INDEX rentals_with_a_period_due;
DROP INDEX rentals_with_a_term_ending;
ALTER TABLE rentals
    DROP CONSTRAINT ended_statuses_have_an_end, DROP CONSTRAINT an_end_has_a_reason,
    DROP CONSTRAINT a_term_starts_and_ends_together,
    DROP COLUMN term_starts_at, DROP COLUMN term_ends_at, DROP COLUMN next_period, DROP COLUMN next_period_at,
    DROP COLUMN periods_paid, DROP COLUMN billing_seq, DROP COLUMN end_reason, DROP COLUMN ended_at,
    DROP COLUMN termination_fee;
