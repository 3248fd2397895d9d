-- The W3C trace context of the request or event that wrote the row: the relay sends it
-- in the message's `traceparent` header, so one trace follows a change from the
-- client to the last consumer. NULL when no trace was being recorded.
ALTER TABLE outbox ADD COLUMN trace_context text;
