-- Field service after the installation: filter-care visits at each product's interval
-- during the term, and one pickup when a delivered rental ends. docs/field-service.md
-- has the rules.

-- What delivery knows of each running contract, to plan its visits: the term, the care
-- interval it started with, and when it ended.
CREATE TABLE visit_plans (
    rental_id            uuid        PRIMARY KEY,
    customer_id          uuid        NOT NULL,
    product_id           uuid        NOT NULL,
    address              text        NOT NULL,
    care_interval_months integer     NOT NULL CHECK (care_interval_months BETWEEN 1 AND 24),
    term_starts_at       timestamptz,
    term_ends_at         timestamptz,
    ended_at             timestamptz,
    updated_at           timestamptz NOT NULL
);

-- Visits: CARE number n is due n care intervals after the term starts; a rental has at
-- most one PICKUP (number 1).
--   SCHEDULED    planned for scheduled_for
--   IN_PROGRESS  the technician is there
--   DONE         done (a pickup: the unit is collected)
--   CANCELLED    will not happen (a care visit after the rental ended)
CREATE TABLE visits (
    id            uuid        PRIMARY KEY,
    rental_id     uuid        NOT NULL,
    customer_id   uuid        NOT NULL,
    product_id    uuid        NOT NULL,
    -- The delivery whose unit a pickup collects.
    delivery_id   uuid,
    kind          text        NOT NULL CHECK (kind IN ('CARE', 'PICKUP')),
    number        integer     NOT NULL CHECK (number >= 1),
    status        text        NOT NULL CHECK (status IN ('SCHEDULED', 'IN_PROGRESS', 'DONE', 'CANCELLED')),
    address       text        NOT NULL,
    -- The date the plan gave it (customers move a care visit within 14 days of it).
    planned_for   timestamptz NOT NULL,
    scheduled_for timestamptz NOT NULL,
    -- When a technician first started it, and when it was first moved (the history
    -- keeps one of each per visit).
    started_at    timestamptz,
    first_rescheduled_at timestamptz,
    done_at       timestamptz,
    cancelled_at  timestamptz,
    notes         text        CHECK (char_length(notes) <= 2000),
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    UNIQUE (rental_id, kind, number),
    CHECK ((kind = 'PICKUP') = (delivery_id IS NOT NULL)),
    CHECK ((status = 'DONE') = (done_at IS NOT NULL)),
    CHECK ((status = 'CANCELLED') = (cancelled_at IS NOT NULL))
);
CREATE UNIQUE INDEX visits_one_pickup_per_rental ON visits (rental_id) WHERE kind = 'PICKUP';
CREATE INDEX visits_by_rental ON visits (rental_id, scheduled_for);
-- The technicians' queue: oldest due first.
CREATE INDEX visits_queue ON visits (scheduled_for, id);
