DROP TABLE jobs;
DROP TABLE certificates;
DROP TABLE cert_objects;
DROP TABLE cas;
DROP TABLE policy_folders;
DROP TABLE tokens;
DROP TABLE users;
DROP TABLE meta;
