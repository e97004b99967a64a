package sqlstore

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/store"
)

const alertColumns = `id, subscription, resource_group, cluster, severity, severity_rank, status, namespace, alert_type,
	start_time, end_time, count, status_changed_by, status_changed_at, ingested_at, search, doc`

// alertInsertChunk bounds the rows of one ingest statement (SQLite binds
// 17 parameters a row and allows 32766).
const alertInsertChunk = 500

// severityRank orders severities for sorting (higher is more severe).
func severityRank(s string) int {
	switch s {
	case alert.SeverityHigh:
		return 4
	case alert.SeverityMedium:
		return 3
	case alert.SeverityLow:
		return 2
	case alert.SeverityInformational:
		return 1
	}
	return 0
}

// searchText is what AlertFilter.Text matches: displayName, description,
// process path and command line, pod and image, lower-cased.
func searchText(a *alert.Alert) string {
	parts := []string{a.DisplayName, a.Description, a.Entities.Pod}
	if p := a.Entities.Process; p != nil {
		parts = append(parts, p.Path, p.CommandLine)
	}
	if c := a.Entities.Container; c != nil {
		parts = append(parts, c.Image)
	}
	return strings.ToLower(strings.Join(parts, "\n"))
}

// ingestRow is one alert of a batch, merged with its duplicates.
type ingestRow struct {
	a   store.Alert
	doc string
}

// grow merges b into a as a replay would; it reports whether a changed.
func grow(a *store.Alert, b *store.Alert) bool {
	changed := false
	if b.Count > a.Count {
		a.Count, changed = b.Count, true
	}
	if b.StartTime.Before(a.StartTime) {
		a.StartTime, changed = b.StartTime, true
	}
	if b.EndTime.After(a.EndTime) {
		a.EndTime, changed = b.EndTime, true
	}
	return changed
}

// IngestAlerts stores a batch in one transaction. New IDs are inserted;
// known ones are merged (count max, start min, end max) while their
// status, status change and document stay as first stored.
func (s *Store) IngestAlerts(ctx context.Context, cluster store.ClusterRef, alerts []store.Alert) (store.IngestResult, error) {
	var res store.IngestResult
	if len(alerts) == 0 {
		return res, nil
	}
	now := s.batchTime()
	rows := make([]ingestRow, 0, len(alerts))
	index := make(map[string]int, len(alerts))
	for i := range alerts {
		a := alerts[i]
		if a.ID == "" {
			return store.IngestResult{}, fmt.Errorf("ingest alerts: alert %d has no id", i)
		}
		a.Cluster = cluster
		// A window needs both ends: a missing one is the other (or now).
		a.StartTime, a.EndTime = orTime(a.StartTime, a.EndTime).UTC(), orTime(a.EndTime, a.StartTime).UTC()
		if a.StartTime.IsZero() {
			a.StartTime, a.EndTime = now, now
		}
		if a.EndTime.Before(a.StartTime) {
			a.EndTime = a.StartTime
		}
		if a.Count < 1 {
			a.Count = 1
		}
		if a.Status == "" {
			a.Status = alert.StatusActive
		}
		a.StatusChangedAt = a.StatusChangedAt.UTC()
		a.IngestedAt = now
		if j, dup := index[a.ID]; dup {
			if grow(&rows[j].a, &a) {
				res.Updated++
			} else {
				res.Unchanged++
			}
			continue
		}
		index[a.ID] = len(rows)
		rows = append(rows, ingestRow{a: a})
	}
	for i := range rows {
		doc, err := json.Marshal(&rows[i].a.Alert)
		if err != nil {
			return store.IngestResult{}, fmt.Errorf("ingest alerts: encode alert %s: %w", rows[i].a.ID, err)
		}
		rows[i].doc = string(doc)
	}
	// One order for every writer (see upsertAlerts).
	slices.SortFunc(rows, func(x, y ingestRow) int { return strings.Compare(x.a.ID, y.a.ID) })

	var inserted, updated int
	err := s.inTx(ctx, fmt.Sprintf("ingest %d alerts", len(alerts)), func(tx *sql.Tx) error {
		inserted, updated = 0, 0
		for chunk := range slices.Chunk(rows, alertInsertChunk) {
			i, u, err := s.upsertAlerts(ctx, tx, chunk, nanos(now))
			if err != nil {
				return err
			}
			inserted, updated = inserted+i, updated+u
		}
		return nil
	})
	if err != nil {
		return store.IngestResult{}, err
	}
	res.Inserted += inserted
	res.Updated += updated
	res.Unchanged += len(rows) - inserted - updated
	return res, nil
}

// batchTime returns now, but later than any earlier batch of this store:
// upsertAlerts tells inserted rows by it.
func (s *Store) batchTime() time.Time {
	for {
		last := s.lastBatch.Load()
		now := s.now().UnixNano()
		if now <= last {
			now = last + 1
		}
		if s.lastBatch.CompareAndSwap(last, now) {
			return time.Unix(0, now).UTC()
		}
	}
}

// upsertAlerts inserts new alerts and merges known ones in one statement,
// taking row locks in id order (so concurrent batches on PostgreSQL
// cannot deadlock). It returns how many were inserted and how many grew;
// an insert is told from an update by its ingestedAt being this batch's.
func (s *Store) upsertAlerts(ctx context.Context, tx *sql.Tx, rows []ingestRow, batchNanos int64) (inserted, updated int, err error) {
	n := len(rows)
	text := func() []string { return make([]string, n) }
	ints := func() []int64 { return make([]int64, n) }
	id, sub, rg, cl, sev, status, ns, typ, by, search, doc := text(), text(), text(), text(), text(), text(), text(), text(), text(), text(), text()
	rank, start, end, count, changed, ingested := ints(), ints(), ints(), ints(), ints(), ints()
	for i, r := range rows {
		a := &r.a
		id[i], sub[i], rg[i], cl[i], sev[i] = a.ID, a.Cluster.Subscription, a.Cluster.ResourceGroup, a.Cluster.Name, a.Severity
		rank[i], status[i], ns[i], typ[i] = int64(severityRank(a.Severity)), a.Status, a.Entities.Namespace, a.AlertType
		start[i], end[i], count[i], by[i] = nanos(a.StartTime), nanos(a.EndTime), int64(a.Count), a.StatusChangedBy
		changed[i], ingested[i], search[i], doc[i] = nanos(a.StatusChangedAt), batchNanos, searchText(&a.Alert), r.doc
	}
	// The column order is alertColumns'.
	src, args := s.dialect.Rows(Column{Text: id}, Column{Text: sub}, Column{Text: rg}, Column{Text: cl}, Column{Text: sev},
		Column{Int: rank}, Column{Text: status}, Column{Text: ns}, Column{Text: typ}, Column{Int: start}, Column{Int: end},
		Column{Int: count}, Column{Text: by}, Column{Int: changed}, Column{Int: ingested}, Column{Text: search}, Column{Text: doc})
	// "WHERE true" tells SQLite's parser that ON CONFLICT is the upsert's.
	res, err := tx.QueryContext(ctx, `INSERT INTO alerts (`+alertColumns+`)
		SELECT * FROM (`+src+`) AS v WHERE true ORDER BY column1
		ON CONFLICT (id) DO UPDATE SET
			count = CASE WHEN excluded.count > alerts.count THEN excluded.count ELSE alerts.count END,
			start_time = CASE WHEN excluded.start_time < alerts.start_time THEN excluded.start_time ELSE alerts.start_time END,
			end_time = CASE WHEN excluded.end_time > alerts.end_time THEN excluded.end_time ELSE alerts.end_time END
		WHERE excluded.count > alerts.count OR excluded.start_time < alerts.start_time OR excluded.end_time > alerts.end_time
		RETURNING ingested_at`, args...)
	if err != nil {
		return 0, 0, fmt.Errorf("store alerts: %w", err)
	}
	defer res.Close()
	for res.Next() {
		var at int64
		if err := res.Scan(&at); err != nil {
			return 0, 0, fmt.Errorf("store alerts: %w", err)
		}
		if at == batchNanos {
			inserted++
		} else {
			updated++
		}
	}
	if err := res.Err(); err != nil {
		return 0, 0, fmt.Errorf("store alerts: %w", err)
	}
	return inserted, updated, nil
}

func scanAlert(sc scanner) (store.Alert, error) {
	var a store.Alert
	var rank int
	var start, end, changed, ingested int64
	var search, doc string
	if err := sc.Scan(&a.ID, &a.Cluster.Subscription, &a.Cluster.ResourceGroup, &a.Cluster.Name, &a.Severity, &rank, &a.Status,
		&a.Entities.Namespace, &a.AlertType, &start, &end, &a.Count, &a.StatusChangedBy, &changed, &ingested, &search, &doc); err != nil {
		return a, err
	}
	// The columns are authoritative: the document is the alert as first
	// ingested, the columns carry merges and status changes.
	id, status, count := a.ID, a.Status, a.Count
	if err := json.Unmarshal([]byte(doc), &a.Alert); err != nil {
		return a, fmt.Errorf("decode alert %s: %w", id, err)
	}
	a.ID, a.Status, a.Count = id, status, count
	a.StartTime, a.EndTime = fromNanos(start), fromNanos(end)
	a.StatusChangedAt, a.IngestedAt = fromNanos(changed), fromNanos(ingested)
	return a, nil
}

// GetAlert returns one alert.
func (s *Store) GetAlert(ctx context.Context, id string) (store.Alert, error) {
	a, err := scanAlert(s.r.QueryRowContext(ctx, `SELECT `+alertColumns+` FROM alerts WHERE id = $1`, id))
	if isNoRows(err) {
		return a, notFound("alert %q", id)
	}
	if err != nil {
		return a, fmt.Errorf("get alert %s: %w", id, err)
	}
	return a, nil
}

// UpdateAlertStatus sets an alert's status and who changed it when.
func (s *Store) UpdateAlertStatus(ctx context.Context, id, status, by string, at time.Time) (store.Alert, error) {
	switch status {
	case alert.StatusActive, alert.StatusResolved, alert.StatusDismissed:
	default:
		return store.Alert{}, fmt.Errorf("update alert %s: status %q is not one of %s, %s, %s", id, status,
			alert.StatusActive, alert.StatusResolved, alert.StatusDismissed)
	}
	var out store.Alert
	err := s.inTx(ctx, "update status of alert "+id, func(tx *sql.Tx) error {
		if err := execOne(ctx, tx, notFound("alert %q", id), `UPDATE alerts SET status = $2, status_changed_by = $3, status_changed_at = $4 WHERE id = $1`,
			id, status, by, nanos(s.orNow(at))); err != nil {
			return err
		}
		var err error
		out, err = scanAlert(tx.QueryRowContext(ctx, `SELECT `+alertColumns+` FROM alerts WHERE id = $1`, id))
		return err
	})
	return out, err
}

// alertOrders are the sort keys of each AlertFilter.Order, all descending;
// the last key is always the unique id, so keyset paging is exact.
var alertOrders = map[string][]string{
	"endTime":   {"end_time", "id"},
	"startTime": {"start_time", "id"},
	"severity":  {"severity_rank", "end_time", "id"},
	"count":     {"count", "end_time", "id"},
}

// cursor is the position after the last alert of a page.
type cursor struct {
	Order string  `json:"o"`
	Keys  []int64 `json:"k"`
	ID    string  `json:"i"`
}

func (c cursor) encode() string {
	b, _ := json.Marshal(c) // cannot fail: ints and strings
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s, order string, nkeys int) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &c)
	}
	if err != nil || c.Order != order || len(c.Keys) != nkeys || c.ID == "" {
		return c, fmt.Errorf("alert list cursor %q is not a cursor of this listing (order %q); start again without a cursor: %w", s, order, store.ErrInvalid)
	}
	return c, nil
}

// alertKeys returns an alert's sort key values (all but the id).
func alertKeys(a *store.Alert, order string) []int64 {
	switch order {
	case "startTime":
		return []int64{nanos(a.StartTime)}
	case "severity":
		return []int64{int64(severityRank(a.Severity)), nanos(a.EndTime)}
	case "count":
		return []int64{int64(a.Count), nanos(a.EndTime)}
	}
	return []int64{nanos(a.EndTime)}
}

// where builds the WHERE clause of a filter; args are appended to.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	for _, a := range args {
		w.args = append(w.args, a)
		cond = strings.Replace(cond, "?", "$"+strconv.Itoa(len(w.args)), 1)
	}
	w.conds = append(w.conds, cond)
}

func (w *where) in(col string, vals []string) {
	if len(vals) == 0 {
		return
	}
	marks := strings.TrimSuffix(strings.Repeat("?,", len(vals)), ",")
	args := make([]any, len(vals))
	for i, v := range vals {
		args[i] = v
	}
	w.add(col+" IN ("+marks+")", args...)
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// likeEscaper escapes LIKE wildcards (the escape character is \).
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

func alertWhere(f *store.AlertFilter) *where {
	w := &where{}
	if f.Subscription != "" {
		w.add("subscription = ?", f.Subscription)
	}
	if f.ResourceGroup != "" {
		w.add("resource_group = ?", f.ResourceGroup)
	}
	if f.Cluster != "" {
		w.add("cluster = ?", f.Cluster)
	}
	w.in("severity", f.Severity)
	w.in("status", f.Status)
	if f.Namespace != "" {
		w.add("namespace = ?", f.Namespace)
	}
	if f.AlertType != "" {
		w.add("alert_type = ?", f.AlertType)
	}
	if !f.Since.IsZero() {
		w.add("end_time >= ?", nanos(f.Since))
	}
	if !f.Until.IsZero() {
		w.add("end_time <= ?", nanos(f.Until))
	}
	if f.Text != "" {
		w.add(`search LIKE ? ESCAPE '\'`, "%"+likeEscaper.Replace(strings.ToLower(f.Text))+"%")
	}
	return w
}

// Page size bounds of ListAlerts.
const (
	DefaultAlertLimit = 100
	MaxAlertLimit     = 1000
)

// ListAlerts returns one page of matching alerts. Since and Until bound
// EndTime inclusively. Pages follow a keyset cursor, so alerts ingested
// while paging neither repeat nor shift later pages.
func (s *Store) ListAlerts(ctx context.Context, f store.AlertFilter) (store.AlertPage, error) {
	var page store.AlertPage
	order := f.Order
	if order == "" {
		order = "endTime"
	}
	keys, ok := alertOrders[order]
	if !ok {
		return page, fmt.Errorf("list alerts: order %q is not one of endTime, startTime, severity, count", f.Order)
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultAlertLimit
	}
	limit = min(limit, MaxAlertLimit)
	w := alertWhere(&f)
	if f.Cursor != "" {
		c, err := decodeCursor(f.Cursor, order, len(keys)-1)
		if err != nil {
			return page, fmt.Errorf("list alerts: %w", err)
		}
		args := make([]any, 0, len(keys))
		for _, k := range c.Keys {
			args = append(args, k)
		}
		args = append(args, c.ID)
		marks := strings.TrimSuffix(strings.Repeat("?,", len(keys)), ",")
		w.add("("+strings.Join(keys, ", ")+") < ("+marks+")", args...)
	}
	desc := make([]string, len(keys))
	for i, k := range keys {
		desc[i] = k + " DESC"
	}
	q := `SELECT ` + alertColumns + ` FROM alerts` + w.String() + ` ORDER BY ` + strings.Join(desc, ", ") +
		` LIMIT ` + strconv.Itoa(limit+1)
	rows, err := s.r.QueryContext(ctx, q, w.args...)
	if err != nil {
		return page, fmt.Errorf("list alerts: %w", err)
	}
	alerts, err := collect(rows, "list alerts", scanAlert)
	if err != nil {
		return page, err
	}
	if len(alerts) > limit {
		alerts = alerts[:limit]
		last := &alerts[limit-1]
		page.NextCursor = cursor{Order: order, Keys: alertKeys(last, order), ID: last.ID}.encode()
	}
	page.Alerts = alerts
	return page, nil
}

// CountAlerts counts the alerts matching f (Order, Limit and Cursor are
// ignored).
func (s *Store) CountAlerts(ctx context.Context, f store.AlertFilter) (int, error) {
	w := alertWhere(&f)
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM alerts`+w.String(), w.args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("count alerts: %w", err)
	}
	return n, nil
}
