-- vigil hub schema, SQLite. Timestamps are Unix nanoseconds (UTC), 0 when
-- unset; maps and slices are JSON text ('null' when empty).

CREATE TABLE resource_groups (
	subscription TEXT NOT NULL,
	name TEXT NOT NULL,
	location TEXT NOT NULL DEFAULT '',
	tags TEXT NOT NULL DEFAULT 'null',
	created_at INTEGER NOT NULL,
	PRIMARY KEY (subscription, name)
);

CREATE TABLE clusters (
	subscription TEXT NOT NULL,
	resource_group TEXT NOT NULL,
	name TEXT NOT NULL,
	location TEXT NOT NULL DEFAULT '',
	tags TEXT NOT NULL DEFAULT 'null',
	distribution TEXT NOT NULL DEFAULT '',
	connectivity_status TEXT NOT NULL,
	provisioning_state TEXT NOT NULL,
	agent_version TEXT NOT NULL DEFAULT '',
	kubernetes_version TEXT NOT NULL DEFAULT '',
	node_count INTEGER NOT NULL DEFAULT 0,
	last_heartbeat INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (subscription, resource_group, name),
	FOREIGN KEY (subscription, resource_group) REFERENCES resource_groups (subscription, name)
);

CREATE INDEX clusters_connectivity ON clusters (connectivity_status);

CREATE TABLE extensions (
	subscription TEXT NOT NULL,
	resource_group TEXT NOT NULL,
	cluster TEXT NOT NULL,
	name TEXT NOT NULL,
	extension_type TEXT NOT NULL,
	version TEXT NOT NULL DEFAULT '',
	configuration_settings TEXT NOT NULL DEFAULT 'null',
	protected_settings BLOB NOT NULL DEFAULT x'',
	provisioning_state TEXT NOT NULL,
	statuses TEXT NOT NULL DEFAULT 'null',
	generation INTEGER NOT NULL,
	applied_generation INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (subscription, resource_group, cluster, name),
	FOREIGN KEY (subscription, resource_group, cluster) REFERENCES clusters (subscription, resource_group, name) ON DELETE CASCADE
);

CREATE TABLE plans (
	subscription TEXT PRIMARY KEY,
	enabled INTEGER NOT NULL,
	components TEXT NOT NULL DEFAULT 'null',
	updated_by TEXT NOT NULL DEFAULT '',
	updated_at INTEGER NOT NULL
);

CREATE TABLE alerts (
	id TEXT PRIMARY KEY,
	subscription TEXT NOT NULL,
	resource_group TEXT NOT NULL,
	cluster TEXT NOT NULL,
	severity TEXT NOT NULL,
	severity_rank INTEGER NOT NULL,
	status TEXT NOT NULL,
	namespace TEXT NOT NULL DEFAULT '',
	alert_type TEXT NOT NULL,
	start_time INTEGER NOT NULL,
	end_time INTEGER NOT NULL,
	count INTEGER NOT NULL,
	status_changed_by TEXT NOT NULL DEFAULT '',
	status_changed_at INTEGER NOT NULL DEFAULT 0,
	ingested_at INTEGER NOT NULL,
	search TEXT NOT NULL,
	doc TEXT NOT NULL
);

CREATE INDEX alerts_end_time ON alerts (end_time, id);
CREATE INDEX alerts_start_time ON alerts (start_time, id);
CREATE INDEX alerts_severity ON alerts (severity_rank, end_time, id);
CREATE INDEX alerts_cluster ON alerts (subscription, resource_group, cluster, end_time);
CREATE INDEX alerts_status ON alerts (status, end_time);

CREATE TABLE suppressions (
	subscription TEXT NOT NULL,
	name TEXT NOT NULL,
	match_fields TEXT NOT NULL,
	reason TEXT NOT NULL DEFAULT '',
	expires INTEGER NOT NULL DEFAULT 0,
	created_by TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	PRIMARY KEY (subscription, name)
);

CREATE TABLE tokens (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL DEFAULT '',
	kind TEXT NOT NULL,
	hash BLOB NOT NULL UNIQUE,
	role TEXT NOT NULL DEFAULT '',
	scope TEXT NOT NULL DEFAULT '',
	cluster_subscription TEXT NOT NULL DEFAULT '',
	cluster_resource_group TEXT NOT NULL DEFAULT '',
	cluster_name TEXT NOT NULL DEFAULT '',
	created_by TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL DEFAULT 0,
	revoked_at INTEGER NOT NULL DEFAULT 0,
	last_used INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX tokens_cluster ON tokens (cluster_subscription, cluster_resource_group, cluster_name);

CREATE TABLE sensor_health (
	subscription TEXT NOT NULL,
	resource_group TEXT NOT NULL,
	cluster TEXT NOT NULL,
	node TEXT NOT NULL,
	source_mode TEXT NOT NULL DEFAULT '',
	drops INTEGER NOT NULL DEFAULT 0,
	outbox_dropped INTEGER NOT NULL DEFAULT 0,
	rule_set_version TEXT NOT NULL DEFAULT '',
	sensor_version TEXT NOT NULL DEFAULT '',
	missing TEXT NOT NULL DEFAULT 'null',
	reported_at INTEGER NOT NULL,
	PRIMARY KEY (subscription, resource_group, cluster, node),
	FOREIGN KEY (subscription, resource_group, cluster) REFERENCES clusters (subscription, resource_group, name) ON DELETE CASCADE
);

CREATE TABLE outputs (
	name TEXT PRIMARY KEY,
	type TEXT NOT NULL,
	min_severity TEXT NOT NULL DEFAULT '',
	config TEXT NOT NULL DEFAULT 'null',
	enabled INTEGER NOT NULL,
	created_at INTEGER NOT NULL
);

CREATE TABLE settings (
	key TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
