DROP TABLE voided_rentals;
