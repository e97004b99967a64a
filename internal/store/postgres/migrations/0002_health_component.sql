-- A node can run a sensor and an audit collector: each reports its own
-- health, so the component is part of the key.
ALTER TABLE sensor_health ADD COLUMN component TEXT NOT NULL DEFAULT 'sensor';

ALTER TABLE sensor_health DROP CONSTRAINT sensor_health_pkey;

ALTER TABLE sensor_health ADD PRIMARY KEY (subscription, resource_group, cluster, node, component);
