-- Payments: one successful charge per rental, and its refund. Only the card's last four
-- digits are ever stored.
CREATE TABLE payments (
    id          uuid        PRIMARY KEY,
    rental_id   uuid        NOT NULL UNIQUE,
    customer_id uuid        NOT NULL,
    amount      integer     NOT NULL CHECK (amount > 0),
    card_last4  text        NOT NULL CHECK (card_last4 ~ '^[0-9]{4}$'),
    status      text        NOT NULL CHECK (status IN ('PAID', 'REFUNDED')),
    paid_at     timestamptz NOT NULL,
    refunded_at timestamptz,
    CHECK ((status = 'REFUNDED') = (refunded_at IS NOT NULL))
);
