DROP TABLE compromised_keys;
DROP INDEX acme_orders_certificate;
