DROP TABLE rental_timeline;
