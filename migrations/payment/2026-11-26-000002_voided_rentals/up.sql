-- Rentals whose charge was called off before it happened (the rental service gave up
-- on them after a failure). A charge that arrives late for one of these is refused,
-- so a rental that never committed can never end up paid.
CREATE TABLE voided_rentals (
    rental_id uuid        PRIMARY KEY,
    voided_at timestamptz NOT NULL DEFAULT now()
);
