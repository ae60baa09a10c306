DROP TABLE acme_objects;
DROP TABLE acme_challenges;
DROP TABLE acme_authz;
DROP TABLE acme_orders;
