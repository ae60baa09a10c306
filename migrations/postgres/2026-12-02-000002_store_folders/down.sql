DROP INDEX stores_machine_path;
ALTER TABLE stores DROP COLUMN folder_dn;
