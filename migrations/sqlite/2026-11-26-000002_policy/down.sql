DROP TABLE revocations;
DROP TABLE csrs;
