package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/vigil-sec/vigil/internal/store"
)

// scanner is *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// ---- resource groups

const rgColumns = `subscription, name, location, tags, created_at`

func scanRG(sc scanner) (store.ResourceGroup, error) {
	var rg store.ResourceGroup
	var tags string
	var created int64
	if err := sc.Scan(&rg.Subscription, &rg.Name, &rg.Location, &tags, &created); err != nil {
		return rg, err
	}
	rg.CreatedAt = fromNanos(created)
	return rg, fromJSON(tags, &rg.Tags)
}

// PutResourceGroup creates or updates a resource group (CreatedAt is kept).
func (s *Store) PutResourceGroup(ctx context.Context, rg store.ResourceGroup) (store.ResourceGroup, error) {
	if rg.Subscription == "" || rg.Name == "" {
		return rg, fmt.Errorf("put resource group: subscription and name are required")
	}
	tags, err := mapJSON(rg.Tags)
	if err != nil {
		return rg, fmt.Errorf("put resource group %s: encode tags: %w", rg.Name, err)
	}
	var out store.ResourceGroup
	err = s.inTx(ctx, "put resource group "+rg.Name, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO resource_groups (`+rgColumns+`) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (subscription, name) DO UPDATE SET location = excluded.location, tags = excluded.tags`,
			rg.Subscription, rg.Name, rg.Location, tags, nanos(s.orNow(rg.CreatedAt))); err != nil {
			return err
		}
		out, err = scanRG(tx.QueryRowContext(ctx, `SELECT `+rgColumns+` FROM resource_groups WHERE subscription = $1 AND name = $2`, rg.Subscription, rg.Name))
		return err
	})
	return out, err
}

// ensureRG creates a resource group unless it exists.
func (s *Store) ensureRG(ctx context.Context, tx *sql.Tx, sub, name, location string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO resource_groups (`+rgColumns+`) VALUES ($1, $2, $3, 'null', $4)
		ON CONFLICT (subscription, name) DO NOTHING`, sub, name, location, nanos(s.now()))
	return err
}

// GetResourceGroup returns one resource group.
func (s *Store) GetResourceGroup(ctx context.Context, subscription, name string) (store.ResourceGroup, error) {
	rg, err := scanRG(s.r.QueryRowContext(ctx, `SELECT `+rgColumns+` FROM resource_groups WHERE subscription = $1 AND name = $2`, subscription, name))
	if isNoRows(err) {
		return rg, notFound("resource group %q in subscription %q", name, subscription)
	}
	if err != nil {
		return rg, fmt.Errorf("get resource group %s: %w", name, err)
	}
	return rg, nil
}

// ListResourceGroups lists a subscription's groups (empty: all) by name.
func (s *Store) ListResourceGroups(ctx context.Context, subscription string) ([]store.ResourceGroup, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+rgColumns+` FROM resource_groups WHERE ($1 = '' OR subscription = $1) ORDER BY subscription, name`, subscription)
	if err != nil {
		return nil, fmt.Errorf("list resource groups: %w", err)
	}
	return collect(rows, "list resource groups", scanRG)
}

// DeleteResourceGroup deletes an empty resource group.
func (s *Store) DeleteResourceGroup(ctx context.Context, subscription, name string) error {
	return s.inTx(ctx, "delete resource group "+name, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM clusters WHERE subscription = $1 AND resource_group = $2`, subscription, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return conflict("resource group %q still holds %d connected cluster(s); delete them first", name, n)
		}
		return execOne(ctx, tx, notFound("resource group %q in subscription %q", name, subscription),
			`DELETE FROM resource_groups WHERE subscription = $1 AND name = $2`, subscription, name)
	})
}

// collect scans all rows with scan.
func collect[T any](rows *sql.Rows, what string, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// ---- clusters

const clusterColumns = `subscription, resource_group, name, location, tags, distribution, connectivity_status,
	provisioning_state, agent_version, kubernetes_version, node_count, last_heartbeat, created_at, updated_at`

const clusterWhere = ` WHERE subscription = $1 AND resource_group = $2 AND name = $3`

func scanCluster(sc scanner) (store.Cluster, error) {
	var c store.Cluster
	var tags string
	var hb, created, updated int64
	if err := sc.Scan(&c.Subscription, &c.ResourceGroup, &c.Name, &c.Location, &tags, &c.Distribution, &c.ConnectivityStatus,
		&c.ProvisioningState, &c.AgentVersion, &c.KubernetesVersion, &c.NodeCount, &hb, &created, &updated); err != nil {
		return c, err
	}
	c.LastHeartbeat, c.CreatedAt, c.UpdatedAt = fromNanos(hb), fromNanos(created), fromNanos(updated)
	return c, fromJSON(tags, &c.Tags)
}

func refArgs(r store.ClusterRef) []any { return []any{r.Subscription, r.ResourceGroup, r.Name} }

func clusterNotFound(r store.ClusterRef) error {
	return notFound("cluster %q in resource group %q of subscription %q", r.Name, r.ResourceGroup, r.Subscription)
}

// PutCluster creates or updates a cluster, creating its resource group on
// demand. On update, connectivity, heartbeat and CreatedAt are kept, and so
// are the agent-reported versions and node count unless c carries them.
func (s *Store) PutCluster(ctx context.Context, c store.Cluster) (store.Cluster, error) {
	if c.Subscription == "" || c.ResourceGroup == "" || c.Name == "" {
		return c, fmt.Errorf("put cluster: subscription, resource group and name are required")
	}
	tags, err := mapJSON(c.Tags)
	if err != nil {
		return c, fmt.Errorf("put cluster %s: encode tags: %w", c.Name, err)
	}
	if c.ConnectivityStatus == "" {
		c.ConnectivityStatus = store.Connecting
	}
	if c.ProvisioningState == "" {
		c.ProvisioningState = store.ProvisioningSucceeded
	}
	now := s.now()
	var out store.Cluster
	err = s.inTx(ctx, "put cluster "+c.Name, func(tx *sql.Tx) error {
		if err := s.ensureRG(ctx, tx, c.Subscription, c.ResourceGroup, c.Location); err != nil {
			return fmt.Errorf("create resource group %s: %w", c.ResourceGroup, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO clusters (`+clusterColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
			ON CONFLICT (subscription, resource_group, name) DO UPDATE SET
				location = excluded.location, tags = excluded.tags, distribution = excluded.distribution,
				provisioning_state = excluded.provisioning_state,
				agent_version = COALESCE(NULLIF(excluded.agent_version, ''), clusters.agent_version),
				kubernetes_version = COALESCE(NULLIF(excluded.kubernetes_version, ''), clusters.kubernetes_version),
				node_count = CASE WHEN excluded.node_count > 0 THEN excluded.node_count ELSE clusters.node_count END,
				updated_at = excluded.updated_at`,
			c.Subscription, c.ResourceGroup, c.Name, c.Location, tags, c.Distribution, c.ConnectivityStatus,
			c.ProvisioningState, c.AgentVersion, c.KubernetesVersion, c.NodeCount, nanos(c.LastHeartbeat),
			nanos(orTime(c.CreatedAt, now)), nanos(now)); err != nil {
			return err
		}
		out, err = scanCluster(tx.QueryRowContext(ctx, `SELECT `+clusterColumns+` FROM clusters`+clusterWhere, refArgs(c.ClusterRef)...))
		return err
	})
	return out, err
}

func orTime(t, def time.Time) time.Time {
	if t.IsZero() {
		return def
	}
	return t
}

// GetCluster returns one cluster.
func (s *Store) GetCluster(ctx context.Context, ref store.ClusterRef) (store.Cluster, error) {
	c, err := scanCluster(s.r.QueryRowContext(ctx, `SELECT `+clusterColumns+` FROM clusters`+clusterWhere, refArgs(ref)...))
	if isNoRows(err) {
		return c, clusterNotFound(ref)
	}
	if err != nil {
		return c, fmt.Errorf("get cluster %s: %w", ref.Name, err)
	}
	return c, nil
}

// ListClusters lists clusters of a subscription (empty: all), optionally of
// one resource group, ordered by subscription, group and name.
func (s *Store) ListClusters(ctx context.Context, subscription, resourceGroup string) ([]store.Cluster, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+clusterColumns+` FROM clusters
		WHERE ($1 = '' OR subscription = $1) AND ($2 = '' OR resource_group = $2)
		ORDER BY subscription, resource_group, name`, subscription, resourceGroup)
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	return collect(rows, "list clusters", scanCluster)
}

// DeleteCluster deletes the cluster with its extensions, tokens and sensor
// health; its alerts stay.
func (s *Store) DeleteCluster(ctx context.Context, ref store.ClusterRef) error {
	return s.inTx(ctx, "delete cluster "+ref.Name, func(tx *sql.Tx) error {
		for _, q := range []string{
			`DELETE FROM extensions WHERE subscription = $1 AND resource_group = $2 AND cluster = $3`,
			`DELETE FROM sensor_health WHERE subscription = $1 AND resource_group = $2 AND cluster = $3`,
			`DELETE FROM tokens WHERE cluster_subscription = $1 AND cluster_resource_group = $2 AND cluster_name = $3`,
		} {
			if _, err := tx.ExecContext(ctx, q, refArgs(ref)...); err != nil {
				return err
			}
		}
		return execOne(ctx, tx, clusterNotFound(ref), `DELETE FROM clusters`+clusterWhere, refArgs(ref)...)
	})
}

// RecordHeartbeat stores a heartbeat and sets the cluster Connected. A
// heartbeat older than the last one (delivered late) does not move
// LastHeartbeat back.
func (s *Store) RecordHeartbeat(ctx context.Context, ref store.ClusterRef, hb store.Heartbeat) error {
	err := execOne(ctx, s.w, clusterNotFound(ref), `UPDATE clusters SET connectivity_status = $4,
			last_heartbeat = CASE WHEN $5 > last_heartbeat THEN $5 ELSE last_heartbeat END,
			agent_version = COALESCE(NULLIF($6, ''), agent_version),
			kubernetes_version = COALESCE(NULLIF($7, ''), kubernetes_version),
			node_count = CASE WHEN $8 > 0 THEN $8 ELSE node_count END`+clusterWhere,
		ref.Subscription, ref.ResourceGroup, ref.Name, store.Connected, nanos(s.orNow(hb.At)),
		hb.AgentVersion, hb.KubernetesVersion, hb.NodeCount)
	if err != nil {
		return fmt.Errorf("record heartbeat of cluster %s: %w", ref.Name, err)
	}
	return nil
}

// ExpireByCredential expires clusters whose agents hold no valid
// credential any more.
func (s *Store) ExpireByCredential(ctx context.Context, now time.Time) (int, error) {
	const agentOf = `FROM tokens t WHERE t.kind = $2 AND t.cluster_subscription = clusters.subscription
		AND t.cluster_resource_group = clusters.resource_group AND t.cluster_name = clusters.name`
	res, err := s.w.ExecContext(ctx, `UPDATE clusters SET connectivity_status = $1
		WHERE connectivity_status IN ($3, $4, $5)
		AND EXISTS (SELECT 1 `+agentOf+`)
		AND NOT EXISTS (SELECT 1 `+agentOf+` AND (t.revoked_at = 0 OR t.revoked_at > $6) AND (t.expires_at = 0 OR t.expires_at > $6))`,
		store.Expired, store.TokenAgent, store.Connecting, store.Connected, store.Offline, nanos(now))
	if err != nil {
		return 0, fmt.Errorf("expire clusters without a valid agent credential: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// FailUndelivered fails extensions whose desired state has waited for
// the agent since before.
func (s *Store) FailUndelivered(ctx context.Context, before time.Time, status store.ExtensionStatus) (int, error) {
	js, err := sliceJSON([]store.ExtensionStatus{status})
	if err != nil {
		return 0, fmt.Errorf("fail undelivered extensions: %w", err)
	}
	res, err := s.w.ExecContext(ctx, `UPDATE extensions SET provisioning_state = $1, statuses = $2
		WHERE generation > applied_generation AND provisioning_state IN ($3, $4) AND updated_at < $5`,
		store.ProvisioningFailed, js, store.ProvisioningCreating, store.ProvisioningUpdating, nanos(before))
	if err != nil {
		return 0, fmt.Errorf("fail undelivered extensions: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// SweepConnectivity moves silent clusters to Offline and Expired.
func (s *Store) SweepConnectivity(ctx context.Context, offlineBefore, expiredBefore time.Time) (int, error) {
	total := 0
	err := s.inTx(ctx, "sweep cluster connectivity", func(tx *sql.Tx) error {
		total = 0
		// Expire first, so one sweep moves a cluster at most one step.
		for _, st := range []struct {
			query string
			args  []any
		}{
			{`UPDATE clusters SET connectivity_status = $1 WHERE connectivity_status IN ($2, $3)
				AND (CASE WHEN last_heartbeat <> 0 THEN last_heartbeat ELSE created_at END) < $4`,
				[]any{store.Expired, store.Offline, store.Connecting, nanos(expiredBefore)}},
			{`UPDATE clusters SET connectivity_status = $1 WHERE connectivity_status = $2 AND last_heartbeat < $3`,
				[]any{store.Offline, store.Connected, nanos(offlineBefore)}},
		} {
			res, err := tx.ExecContext(ctx, st.query, st.args...)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			total += int(n)
		}
		return nil
	})
	return total, err
}

// clusterExists fails with ErrConflict when the parent cluster is missing.
func clusterExists(ctx context.Context, q queryer, ref store.ClusterRef) error {
	var n int
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM clusters`+clusterWhere, refArgs(ref)...).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return conflict("cluster %q in resource group %q of subscription %q does not exist; connect it first", ref.Name, ref.ResourceGroup, ref.Subscription)
	}
	return nil
}

// ---- extensions

const extColumns = `subscription, resource_group, cluster, name, extension_type, version, configuration_settings,
	protected_settings, provisioning_state, statuses, generation, applied_generation, created_at, updated_at`

const extWhere = ` WHERE subscription = $1 AND resource_group = $2 AND cluster = $3 AND name = $4`

func scanExt(sc scanner) (store.Extension, error) {
	var e store.Extension
	var settings, statuses string
	var created, updated int64
	if err := sc.Scan(&e.Cluster.Subscription, &e.Cluster.ResourceGroup, &e.Cluster.Name, &e.Name, &e.ExtensionType, &e.Version,
		&settings, &e.ProtectedSettings, &e.ProvisioningState, &statuses, &e.Generation, &e.AppliedGeneration, &created, &updated); err != nil {
		return e, err
	}
	if len(e.ProtectedSettings) == 0 {
		e.ProtectedSettings = nil
	}
	e.CreatedAt, e.UpdatedAt = fromNanos(created), fromNanos(updated)
	if err := fromJSON(settings, &e.ConfigurationSettings); err != nil {
		return e, err
	}
	if err := fromJSON(statuses, &e.Statuses); err != nil {
		return e, err
	}
	for i := range e.Statuses {
		e.Statuses[i].Time = e.Statuses[i].Time.UTC()
	}
	return e, nil
}

func extArgs(ref store.ClusterRef, name string) []any {
	return []any{ref.Subscription, ref.ResourceGroup, ref.Name, name}
}

func extNotFound(ref store.ClusterRef, name string) error {
	return notFound("extension %q on cluster %q (resource group %q)", name, ref.Name, ref.ResourceGroup)
}

// PutExtension creates or updates an extension's desired state. Generation
// starts at 1 and grows by one whenever the type, version, configuration
// or protected settings change; an unchanged put changes nothing.
func (s *Store) PutExtension(ctx context.Context, e store.Extension) (store.Extension, error) {
	if e.Name == "" || e.Cluster.Name == "" {
		return e, fmt.Errorf("put extension: cluster and name are required")
	}
	settings, err := mapJSON(e.ConfigurationSettings)
	if err != nil {
		return e, fmt.Errorf("put extension %s: encode configuration settings: %w", e.Name, err)
	}
	var out store.Extension
	err = s.inTx(ctx, "put extension "+e.Name, func(tx *sql.Tx) error {
		if err := clusterExists(ctx, tx, e.Cluster); err != nil {
			return err
		}
		// Insert-or-nothing first: on PostgreSQL a replica creating the
		// same extension at once makes this wait and then update.
		state := e.ProvisioningState
		if state == "" {
			state = store.ProvisioningCreating
		}
		now := nanos(s.now())
		res, err := tx.ExecContext(ctx, `INSERT INTO extensions (`+extColumns+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'null', 1, 0, $10, $10) ON CONFLICT DO NOTHING`,
			e.Cluster.Subscription, e.Cluster.ResourceGroup, e.Cluster.Name, e.Name, e.ExtensionType, e.Version,
			settings, nonNilBytes(e.ProtectedSettings), state, now)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			if err := updateExtension(ctx, tx, e, settings, now); err != nil {
				return err
			}
		}
		out, err = scanExt(tx.QueryRowContext(ctx, `SELECT `+extColumns+` FROM extensions`+extWhere, extArgs(e.Cluster, e.Name)...))
		return err
	})
	return out, err
}

// updateExtension changes a stored extension's desired state and bumps
// its generation, unless nothing desired changed.
func updateExtension(ctx context.Context, tx *sql.Tx, e store.Extension, settings string, now int64) error {
	cur, err := scanExt(tx.QueryRowContext(ctx, `SELECT `+extColumns+` FROM extensions`+extWhere, extArgs(e.Cluster, e.Name)...))
	if err != nil {
		return err
	}
	curSettings, err := mapJSON(cur.ConfigurationSettings)
	if err != nil {
		return err
	}
	if cur.ExtensionType == e.ExtensionType && cur.Version == e.Version && curSettings == settings &&
		bytes.Equal(cur.ProtectedSettings, e.ProtectedSettings) {
		return nil
	}
	state := e.ProvisioningState
	if state == "" || state == store.ProvisioningSucceeded {
		state = store.ProvisioningUpdating
	}
	_, err = tx.ExecContext(ctx, `UPDATE extensions SET extension_type = $5, version = $6, configuration_settings = $7,
		protected_settings = $8, provisioning_state = $9, generation = generation + 1, updated_at = $10`+extWhere,
		e.Cluster.Subscription, e.Cluster.ResourceGroup, e.Cluster.Name, e.Name, e.ExtensionType, e.Version,
		settings, nonNilBytes(e.ProtectedSettings), state, now)
	return err
}

// nonNilBytes keeps NOT NULL blob columns non-null.
func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// GetExtension returns one extension.
func (s *Store) GetExtension(ctx context.Context, cluster store.ClusterRef, name string) (store.Extension, error) {
	e, err := scanExt(s.r.QueryRowContext(ctx, `SELECT `+extColumns+` FROM extensions`+extWhere, extArgs(cluster, name)...))
	if isNoRows(err) {
		return e, extNotFound(cluster, name)
	}
	if err != nil {
		return e, fmt.Errorf("get extension %s: %w", name, err)
	}
	return e, nil
}

// ListExtensions lists a cluster's extensions by name.
func (s *Store) ListExtensions(ctx context.Context, cluster store.ClusterRef) ([]store.Extension, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+extColumns+` FROM extensions
		WHERE subscription = $1 AND resource_group = $2 AND cluster = $3 ORDER BY name`, refArgs(cluster)...)
	if err != nil {
		return nil, fmt.Errorf("list extensions of cluster %s: %w", cluster.Name, err)
	}
	return collect(rows, "list extensions of cluster "+cluster.Name, scanExt)
}

// ReportExtensionStatus records what the agent applied. AppliedGeneration
// never goes backwards; the provisioning state is taken only from a report
// about the current generation (a late report about an older one must not
// mark a pending update Succeeded). A generation the hub never issued is a
// conflict.
func (s *Store) ReportExtensionStatus(ctx context.Context, cluster store.ClusterRef, name string, generation int64, state string, statuses []store.ExtensionStatus) error {
	js, err := sliceJSON(statuses)
	if err != nil {
		return fmt.Errorf("report status of extension %s: encode statuses: %w", name, err)
	}
	return s.inTx(ctx, "report status of extension "+name, func(tx *sql.Tx) error {
		var gen int64
		err := tx.QueryRowContext(ctx, `SELECT generation FROM extensions`+extWhere, extArgs(cluster, name)...).Scan(&gen)
		if isNoRows(err) {
			return extNotFound(cluster, name)
		}
		if err != nil {
			return err
		}
		if generation > gen || generation < 0 {
			return conflict("agent reports generation %d of extension %q but the hub issued up to %d", generation, name, gen)
		}
		_, err = tx.ExecContext(ctx, `UPDATE extensions SET statuses = $5,
			applied_generation = CASE WHEN $6 > applied_generation THEN $6 ELSE applied_generation END,
			provisioning_state = CASE WHEN $6 = generation AND $7 <> '' THEN $7 ELSE provisioning_state END,
			updated_at = $8`+extWhere,
			cluster.Subscription, cluster.ResourceGroup, cluster.Name, name, js, generation, state, nanos(s.now()))
		return err
	})
}

// MarkExtensionDeleting sets an extension Deleting under a new generation
// (idempotent: an extension already Deleting keeps its generation).
func (s *Store) MarkExtensionDeleting(ctx context.Context, cluster store.ClusterRef, name string) (store.Extension, error) {
	var out store.Extension
	err := s.inTx(ctx, "mark extension "+name+" deleting", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE extensions SET provisioning_state = $5, generation = generation + 1, updated_at = $6`+extWhere+
			` AND provisioning_state <> $5`, cluster.Subscription, cluster.ResourceGroup, cluster.Name, name, store.ProvisioningDeleting, nanos(s.now())); err != nil {
			return err
		}
		var err error
		out, err = scanExt(tx.QueryRowContext(ctx, `SELECT `+extColumns+` FROM extensions`+extWhere, extArgs(cluster, name)...))
		if isNoRows(err) {
			return extNotFound(cluster, name)
		}
		return err
	})
	if err != nil {
		return out, fmt.Errorf("mark extension %s deleting: %w", name, err)
	}
	return out, nil
}

// DeleteExtension deletes one extension.
func (s *Store) DeleteExtension(ctx context.Context, cluster store.ClusterRef, name string) error {
	if err := execOne(ctx, s.w, extNotFound(cluster, name), `DELETE FROM extensions`+extWhere, extArgs(cluster, name)...); err != nil {
		return fmt.Errorf("delete extension %s: %w", name, err)
	}
	return nil
}

// ---- plans

// GetPlan returns the subscription's plan, or a disabled plan.
func (s *Store) GetPlan(ctx context.Context, subscription string) (store.Plan, error) {
	p := store.Plan{Subscription: subscription}
	var comps string
	var updated int64
	err := s.r.QueryRowContext(ctx, `SELECT enabled, components, updated_by, updated_at FROM plans WHERE subscription = $1`, subscription).
		Scan(&p.Enabled, &comps, &p.UpdatedBy, &updated)
	if isNoRows(err) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("get plan of subscription %s: %w", subscription, err)
	}
	p.UpdatedAt = fromNanos(updated)
	if err := fromJSON(comps, &p.Components); err != nil {
		return p, fmt.Errorf("get plan of subscription %s: decode components: %w", subscription, err)
	}
	return p, nil
}

// PutPlan stores the subscription's plan.
func (s *Store) PutPlan(ctx context.Context, p store.Plan) (store.Plan, error) {
	if p.Subscription == "" {
		return p, fmt.Errorf("put plan: subscription is required")
	}
	comps, err := mapJSON(p.Components)
	if err != nil {
		return p, fmt.Errorf("put plan of subscription %s: encode components: %w", p.Subscription, err)
	}
	p.UpdatedAt = s.orNow(p.UpdatedAt)
	if _, err := s.w.ExecContext(ctx, `INSERT INTO plans (subscription, enabled, components, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (subscription) DO UPDATE SET enabled = excluded.enabled, components = excluded.components,
			updated_by = excluded.updated_by, updated_at = excluded.updated_at`,
		p.Subscription, p.Enabled, comps, p.UpdatedBy, nanos(p.UpdatedAt)); err != nil {
		return p, fmt.Errorf("put plan of subscription %s: %w", p.Subscription, err)
	}
	return s.GetPlan(ctx, p.Subscription)
}

// ---- suppressions

const supColumns = `subscription, name, match_fields, reason, expires, created_by, created_at`

func scanSup(sc scanner) (store.Suppression, error) {
	var x store.Suppression
	var match string
	var expires, created int64
	if err := sc.Scan(&x.Subscription, &x.Name, &match, &x.Reason, &expires, &x.CreatedBy, &created); err != nil {
		return x, err
	}
	x.Expires, x.CreatedAt = fromNanos(expires), fromNanos(created)
	return x, fromJSON(match, &x.Match)
}

// PutSuppression creates or replaces a suppression rule (CreatedAt kept).
func (s *Store) PutSuppression(ctx context.Context, x store.Suppression) (store.Suppression, error) {
	if x.Subscription == "" || x.Name == "" {
		return x, fmt.Errorf("put suppression: subscription and name are required")
	}
	match, err := mapJSON(x.Match)
	if err != nil {
		return x, fmt.Errorf("put suppression %s: encode match: %w", x.Name, err)
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO suppressions (`+supColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (subscription, name) DO UPDATE SET match_fields = excluded.match_fields, reason = excluded.reason,
			expires = excluded.expires, created_by = excluded.created_by`,
		x.Subscription, x.Name, match, x.Reason, nanos(x.Expires), x.CreatedBy, nanos(s.orNow(x.CreatedAt))); err != nil {
		return x, fmt.Errorf("put suppression %s: %w", x.Name, err)
	}
	return s.GetSuppression(ctx, x.Subscription, x.Name)
}

// GetSuppression returns one suppression rule.
func (s *Store) GetSuppression(ctx context.Context, subscription, name string) (store.Suppression, error) {
	x, err := scanSup(s.r.QueryRowContext(ctx, `SELECT `+supColumns+` FROM suppressions WHERE subscription = $1 AND name = $2`, subscription, name))
	if isNoRows(err) {
		return x, notFound("suppression rule %q in subscription %q", name, subscription)
	}
	if err != nil {
		return x, fmt.Errorf("get suppression %s: %w", name, err)
	}
	return x, nil
}

// ListSuppressions lists a subscription's rules (empty: all) by name.
func (s *Store) ListSuppressions(ctx context.Context, subscription string) ([]store.Suppression, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+supColumns+` FROM suppressions WHERE ($1 = '' OR subscription = $1) ORDER BY subscription, name`, subscription)
	if err != nil {
		return nil, fmt.Errorf("list suppressions: %w", err)
	}
	return collect(rows, "list suppressions", scanSup)
}

// DeleteSuppression deletes one rule.
func (s *Store) DeleteSuppression(ctx context.Context, subscription, name string) error {
	if err := execOne(ctx, s.w, notFound("suppression rule %q in subscription %q", name, subscription),
		`DELETE FROM suppressions WHERE subscription = $1 AND name = $2`, subscription, name); err != nil {
		return fmt.Errorf("delete suppression %s: %w", name, err)
	}
	return nil
}

// ---- tokens

const tokenColumns = `id, name, kind, hash, role, scope, cluster_subscription, cluster_resource_group, cluster_name,
	created_by, created_at, expires_at, revoked_at, last_used`

func scanToken(sc scanner) (store.Token, error) {
	var t store.Token
	var created, expires, revoked, used int64
	if err := sc.Scan(&t.ID, &t.Name, &t.Kind, &t.Hash, &t.Role, &t.Scope, &t.Cluster.Subscription, &t.Cluster.ResourceGroup,
		&t.Cluster.Name, &t.CreatedBy, &created, &expires, &revoked, &used); err != nil {
		return t, err
	}
	t.CreatedAt, t.ExpiresAt, t.RevokedAt, t.LastUsed = fromNanos(created), fromNanos(expires), fromNanos(revoked), fromNanos(used)
	return t, nil
}

// CreateToken stores a new token; a duplicate ID or hash is a conflict.
func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	if t.ID == "" || len(t.Hash) == 0 || t.Kind == "" {
		return fmt.Errorf("create token: id, kind and hash are required")
	}
	err := execOne(ctx, s.w, conflict("a token with id %q or the same hash exists already; generate a new token", t.ID),
		`INSERT INTO tokens (`+tokenColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT DO NOTHING`,
		t.ID, t.Name, t.Kind, t.Hash, t.Role, t.Scope, t.Cluster.Subscription, t.Cluster.ResourceGroup, t.Cluster.Name,
		t.CreatedBy, nanos(s.orNow(t.CreatedAt)), nanos(t.ExpiresAt), nanos(t.RevokedAt), nanos(t.LastUsed))
	if err != nil {
		return fmt.Errorf("create token %s: %w", t.ID, err)
	}
	return nil
}

// TokenByHash finds a token by its hash, revoked and expired ones too.
func (s *Store) TokenByHash(ctx context.Context, hash []byte) (store.Token, error) {
	t, err := scanToken(s.r.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM tokens WHERE hash = $1`, hash))
	if isNoRows(err) {
		return t, notFound("token")
	}
	if err != nil {
		return t, fmt.Errorf("look up token: %w", err)
	}
	return t, nil
}

// ListTokens lists all tokens, oldest first.
func (s *Store) ListTokens(ctx context.Context) ([]store.Token, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+tokenColumns+` FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return collect(rows, "list tokens", scanToken)
}

// RevokeToken revokes a token; revoking again keeps the first time.
func (s *Store) RevokeToken(ctx context.Context, id string, at time.Time) error {
	if err := execOne(ctx, s.w, notFound("token %q", id),
		`UPDATE tokens SET revoked_at = CASE WHEN revoked_at = 0 OR revoked_at > $2 THEN $2 ELSE revoked_at END WHERE id = $1`, id, nanos(s.orNow(at))); err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	return nil
}

// TouchToken records a use of the token (LastUsed never goes backwards).
func (s *Store) TouchToken(ctx context.Context, id string, at time.Time) error {
	if err := execOne(ctx, s.w, notFound("token %q", id),
		`UPDATE tokens SET last_used = CASE WHEN $2 > last_used THEN $2 ELSE last_used END WHERE id = $1`, id, nanos(s.orNow(at))); err != nil {
		return fmt.Errorf("touch token %s: %w", id, err)
	}
	return nil
}

// ---- sensor health

const healthColumns = `subscription, resource_group, cluster, node, component, source_mode, drops, outbox_dropped,
	rule_set_version, sensor_version, missing, reported_at`

func scanHealth(sc scanner) (store.SensorHealth, error) {
	var h store.SensorHealth
	var drops, outbox, reported int64
	var missing string
	if err := sc.Scan(&h.Cluster.Subscription, &h.Cluster.ResourceGroup, &h.Cluster.Name, &h.Node, &h.Component, &h.SourceMode, &drops, &outbox,
		&h.RuleSetVersion, &h.SensorVersion, &missing, &reported); err != nil {
		return h, err
	}
	// Counters are stored bit for bit in signed BIGINT columns.
	h.Drops, h.OutboxDropped, h.ReportedAt = uint64(drops), uint64(outbox), fromNanos(reported)
	return h, fromJSON(missing, &h.Missing)
}

// PutSensorHealth stores the latest health report of one node's sensor.
func (s *Store) PutSensorHealth(ctx context.Context, h store.SensorHealth) error {
	if h.Node == "" {
		return fmt.Errorf("put sensor health: node is required")
	}
	missing, err := sliceJSON(h.Missing)
	if err != nil {
		return fmt.Errorf("put sensor health of node %s: encode missing: %w", h.Node, err)
	}
	component := h.Component
	switch component {
	case "":
		component = store.ComponentSensor
	case store.ComponentSensor, store.ComponentAudit:
	default:
		return fmt.Errorf("put health of node %s: component %q is invalid: use %s or %s", h.Node, h.Component, store.ComponentSensor, store.ComponentAudit)
	}
	return s.inTx(ctx, "put sensor health of node "+h.Node, func(tx *sql.Tx) error {
		if err := clusterExists(ctx, tx, h.Cluster); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO sensor_health (`+healthColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
			ON CONFLICT (subscription, resource_group, cluster, node, component) DO UPDATE SET source_mode = excluded.source_mode,
				drops = excluded.drops, outbox_dropped = excluded.outbox_dropped, rule_set_version = excluded.rule_set_version,
				sensor_version = excluded.sensor_version, missing = excluded.missing, reported_at = excluded.reported_at`,
			h.Cluster.Subscription, h.Cluster.ResourceGroup, h.Cluster.Name, h.Node, component, h.SourceMode, int64(h.Drops), int64(h.OutboxDropped),
			h.RuleSetVersion, h.SensorVersion, missing, nanos(s.orNow(h.ReportedAt)))
		return err
	})
}

// ListSensorHealth lists a cluster's health reports by node and component.
func (s *Store) ListSensorHealth(ctx context.Context, cluster store.ClusterRef) ([]store.SensorHealth, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+healthColumns+` FROM sensor_health
		WHERE subscription = $1 AND resource_group = $2 AND cluster = $3 ORDER BY node, component`, refArgs(cluster)...)
	if err != nil {
		return nil, fmt.Errorf("list sensor health of cluster %s: %w", cluster.Name, err)
	}
	return collect(rows, "list sensor health of cluster "+cluster.Name, scanHealth)
}

// ---- outputs

const outputColumns = `name, type, min_severity, config, enabled, created_at`

func scanOutput(sc scanner) (store.Output, error) {
	var o store.Output
	var cfg string
	var created int64
	if err := sc.Scan(&o.Name, &o.Type, &o.MinSeverity, &cfg, &o.Enabled, &created); err != nil {
		return o, err
	}
	o.CreatedAt = fromNanos(created)
	return o, fromJSON(cfg, &o.Config)
}

// PutOutput creates or replaces an output (CreatedAt kept).
func (s *Store) PutOutput(ctx context.Context, o store.Output) (store.Output, error) {
	if o.Name == "" || o.Type == "" {
		return o, fmt.Errorf("put output: name and type are required")
	}
	cfg, err := mapJSON(o.Config)
	if err != nil {
		return o, fmt.Errorf("put output %s: encode config: %w", o.Name, err)
	}
	var out store.Output
	err = s.inTx(ctx, "put output "+o.Name, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO outputs (`+outputColumns+`) VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (name) DO UPDATE SET type = excluded.type, min_severity = excluded.min_severity,
				config = excluded.config, enabled = excluded.enabled`,
			o.Name, o.Type, o.MinSeverity, cfg, o.Enabled, nanos(s.orNow(o.CreatedAt))); err != nil {
			return err
		}
		out, err = scanOutput(tx.QueryRowContext(ctx, `SELECT `+outputColumns+` FROM outputs WHERE name = $1`, o.Name))
		return err
	})
	return out, err
}

// ListOutputs lists outputs by name.
func (s *Store) ListOutputs(ctx context.Context) ([]store.Output, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+outputColumns+` FROM outputs ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list outputs: %w", err)
	}
	return collect(rows, "list outputs", scanOutput)
}

// DeleteOutput deletes one output.
func (s *Store) DeleteOutput(ctx context.Context, name string) error {
	if err := execOne(ctx, s.w, notFound("output %q", name), `DELETE FROM outputs WHERE name = $1`, name); err != nil {
		return fmt.Errorf("delete output %s: %w", name, err)
	}
	return nil
}

// ---- settings

// GetSetting returns a hub-wide value.
func (s *Store) GetSetting(ctx context.Context, key string) (string, error) {
	var v string
	err := s.r.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = $1`, key).Scan(&v)
	if isNoRows(err) {
		return "", notFound("setting %q", key)
	}
	if err != nil {
		return "", fmt.Errorf("get setting %s: %w", key, err)
	}
	return v, nil
}

// PutSetting stores a hub-wide value.
func (s *Store) PutSetting(ctx context.Context, key, value string) error {
	if _, err := s.w.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value); err != nil {
		return fmt.Errorf("put setting %s: %w", key, err)
	}
	return nil
}
