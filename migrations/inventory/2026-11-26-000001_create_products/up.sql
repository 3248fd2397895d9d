-- The catalog: dispenser models, their monthly fee and the units on hand.
CREATE TABLE products (
    id          uuid        PRIMARY KEY,
    name        text        NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    description text        NOT NULL DEFAULT '' CHECK (char_length(description) <= 2000),
    -- Korean won have no minor unit, so whole won fit an integer.
    monthly_fee integer     NOT NULL CHECK (monthly_fee > 0),
    -- Stock never goes negative: the database refuses it even if code forgets.
    stock       integer     NOT NULL CHECK (stock >= 0),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX products_name_unique ON products (lower(name));
