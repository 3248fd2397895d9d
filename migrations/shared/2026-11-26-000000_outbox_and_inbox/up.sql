-- Every service has these two tables, created by the shared kit's migrations.

-- Transactional outbox: events are written here in the same transaction as the state
-- change they describe, and a relay publishes them to RabbitMQ afterwards. A row is
-- marked published only after the broker confirmed it.
CREATE TABLE outbox (
    id           uuid        PRIMARY KEY,
    event_type   text        NOT NULL,
    version      integer     NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;

-- Inbox: the ids of the messages this service has already applied, written in the
-- same transaction as their effect, so a redelivered message changes nothing.
CREATE TABLE processed_messages (
    message_id   uuid        PRIMARY KEY,
    event_type   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
