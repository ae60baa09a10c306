DROP INDEX audit_log_actor;
DROP INDEX audit_log_target;
DROP INDEX cert_objects_name_lower;
DROP INDEX cert_objects_folder_id;
DROP INDEX certificates_not_after;
DROP TABLE certificate_names;
DROP TABLE agent_contacts;
DROP TABLE console_sessions;
