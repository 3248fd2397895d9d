DROP TABLE rental_history;
ALTER TABLE rental_timeline DROP CONSTRAINT rental_timeline_pkey;
ALTER TABLE rental_timeline ADD PRIMARY KEY (event_id);
CREATE INDEX rental_timeline_by_rental ON rental_timeline (rental_id, at);
