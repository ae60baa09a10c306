-- Stores belong to a policy folder (Keyfactor's container). NULL until the gateway places a store
-- that existed before this migration, at its next start, in the deepest folder covering every
-- certificate the store has received (the root when none).
ALTER TABLE stores ADD COLUMN folder_dn TEXT;
-- (ClientMachine, StorePath) is unique: the oldest store keeps a duplicated pair, later ones get
-- '#<GUID>' appended to their StorePath (the gateway logs them at start).
UPDATE stores SET store_path = store_path || '#' || guid
 WHERE id NOT IN (SELECT MIN(id) FROM stores GROUP BY client_machine_lower, store_path);
CREATE UNIQUE INDEX stores_machine_path ON stores (client_machine_lower, store_path);
