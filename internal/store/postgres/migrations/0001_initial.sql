-- vigil hub schema, PostgreSQL. Timestamps are Unix nanoseconds (UTC), 0 when
-- unset; maps and slices are JSONB (JSON null when empty). The alert
-- document is TEXT: JSONB rejects \u0000, which a command line can hold.

CREATE TABLE resource_groups (
	subscription TEXT NOT NULL,
	name TEXT NOT NULL,
	location TEXT NOT NULL DEFAULT '',
	tags JSONB NOT NULL DEFAULT 'null',
	created_at BIGINT NOT NULL,
	PRIMARY KEY (subscription, name)
);

CREATE TABLE clusters (
	subscription TEXT NOT NULL,
	resource_group TEXT NOT NULL,
	name TEXT NOT NULL,
	location TEXT NOT NULL DEFAULT '',
	tags JSONB NOT NULL DEFAULT 'null',
	distribution TEXT NOT NULL DEFAULT '',
	connectivity_status TEXT NOT NULL,
	provisioning_state TEXT NOT NULL,
	agent_version TEXT NOT NULL DEFAULT '',
	kubernetes_version TEXT NOT NULL DEFAULT '',
	node_count BIGINT NOT NULL DEFAULT 0,
	last_heartbeat BIGINT NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
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
	configuration_settings JSONB NOT NULL DEFAULT 'null',
	protected_settings BYTEA NOT NULL DEFAULT '',
	provisioning_state TEXT NOT NULL,
	statuses JSONB NOT NULL DEFAULT 'null',
	generation BIGINT NOT NULL,
	applied_generation BIGINT NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (subscription, resource_group, cluster, name),
	FOREIGN KEY (subscription, resource_group, cluster) REFERENCES clusters (subscription, resource_group, name) ON DELETE CASCADE
);

CREATE TABLE plans (
	subscription TEXT PRIMARY KEY,
	enabled BOOLEAN NOT NULL,
	components JSONB NOT NULL DEFAULT 'null',
	updated_by TEXT NOT NULL DEFAULT '',
	updated_at BIGINT NOT NULL
);

CREATE TABLE alerts (
	id TEXT PRIMARY KEY,
	subscription TEXT NOT NULL,
	resource_group TEXT NOT NULL,
	cluster TEXT NOT NULL,
	severity TEXT NOT NULL,
	severity_rank BIGINT NOT NULL,
	status TEXT NOT NULL,
	namespace TEXT NOT NULL DEFAULT '',
	alert_type TEXT NOT NULL,
	start_time BIGINT NOT NULL,
	end_time BIGINT NOT NULL,
	count BIGINT NOT NULL,
	status_changed_by TEXT NOT NULL DEFAULT '',
	status_changed_at BIGINT NOT NULL DEFAULT 0,
	ingested_at BIGINT NOT NULL,
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
	match_fields JSONB NOT NULL,
	reason TEXT NOT NULL DEFAULT '',
	expires BIGINT NOT NULL DEFAULT 0,
	created_by TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	PRIMARY KEY (subscription, name)
);

CREATE TABLE tokens (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL DEFAULT '',
	kind TEXT NOT NULL,
	hash BYTEA NOT NULL UNIQUE,
	role TEXT NOT NULL DEFAULT '',
	scope TEXT NOT NULL DEFAULT '',
	cluster_subscription TEXT NOT NULL DEFAULT '',
	cluster_resource_group TEXT NOT NULL DEFAULT '',
	cluster_name TEXT NOT NULL DEFAULT '',
	created_by TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL DEFAULT 0,
	revoked_at BIGINT NOT NULL DEFAULT 0,
	last_used BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX tokens_cluster ON tokens (cluster_subscription, cluster_resource_group, cluster_name);

CREATE TABLE sensor_health (
	subscription TEXT NOT NULL,
	resource_group TEXT NOT NULL,
	cluster TEXT NOT NULL,
	node TEXT NOT NULL,
	source_mode TEXT NOT NULL DEFAULT '',
	drops BIGINT NOT NULL DEFAULT 0,
	outbox_dropped BIGINT NOT NULL DEFAULT 0,
	rule_set_version TEXT NOT NULL DEFAULT '',
	sensor_version TEXT NOT NULL DEFAULT '',
	missing JSONB NOT NULL DEFAULT 'null',
	reported_at BIGINT NOT NULL,
	PRIMARY KEY (subscription, resource_group, cluster, node),
	FOREIGN KEY (subscription, resource_group, cluster) REFERENCES clusters (subscription, resource_group, name) ON DELETE CASCADE
);

CREATE TABLE outputs (
	name TEXT PRIMARY KEY,
	type TEXT NOT NULL,
	min_severity TEXT NOT NULL DEFAULT '',
	config JSONB NOT NULL DEFAULT 'null',
	enabled BOOLEAN NOT NULL,
	created_at BIGINT NOT NULL
);

CREATE TABLE settings (
	key TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
