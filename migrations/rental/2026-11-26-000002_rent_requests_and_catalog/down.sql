ALTER TABLE rentals DROP COLUMN payment_id;
DROP TABLE rent_requests;
DROP TABLE catalog;
