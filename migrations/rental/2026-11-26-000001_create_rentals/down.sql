DROP TABLE rentals;
