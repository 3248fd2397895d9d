-- What happened to each rental, from every service's events: the start of the
-- customer's history (CQRS read model). One row per event; the event's own time
-- orders the timeline, so events arriving late or out of order still land in place.
CREATE TABLE rental_timeline (
    event_id  uuid        PRIMARY KEY,
    rental_id uuid        NOT NULL,
    kind      text        NOT NULL CHECK (kind IN ('PAID', 'DELIVERY_REQUESTED', 'SHIPPED', 'DELIVERED', 'CANCELLED', 'REFUNDED')),
    at        timestamptz NOT NULL
);

CREATE INDEX rental_timeline_by_rental ON rental_timeline (rental_id, at);
