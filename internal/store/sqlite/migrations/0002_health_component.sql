-- A node can run a sensor and an audit collector: each reports its own
-- health, so the component is part of the key.
CREATE TABLE sensor_health_new (
	subscription TEXT NOT NULL,
	resource_group TEXT NOT NULL,
	cluster TEXT NOT NULL,
	node TEXT NOT NULL,
	component TEXT NOT NULL DEFAULT 'sensor',
	source_mode TEXT NOT NULL DEFAULT '',
	drops INTEGER NOT NULL DEFAULT 0,
	outbox_dropped INTEGER NOT NULL DEFAULT 0,
	rule_set_version TEXT NOT NULL DEFAULT '',
	sensor_version TEXT NOT NULL DEFAULT '',
	missing TEXT NOT NULL DEFAULT 'null',
	reported_at INTEGER NOT NULL,
	PRIMARY KEY (subscription, resource_group, cluster, node, component),
	FOREIGN KEY (subscription, resource_group, cluster) REFERENCES clusters (subscription, resource_group, name) ON DELETE CASCADE
);

INSERT INTO sensor_health_new (subscription, resource_group, cluster, node, component, source_mode, drops, outbox_dropped,
	rule_set_version, sensor_version, missing, reported_at)
SELECT subscription, resource_group, cluster, node, 'sensor', source_mode, drops, outbox_dropped,
	rule_set_version, sensor_version, missing, reported_at FROM sensor_health;

DROP TABLE sensor_health;

ALTER TABLE sensor_health_new RENAME TO sensor_health;
