DROP SEQUENCE billing_seq;
DROP TABLE invoice_attempts;
DROP TABLE invoices;
DROP TABLE payment_method_changes;
DROP TABLE payment_methods;
DROP TABLE network_captures;
DROP TABLE network_cards;
