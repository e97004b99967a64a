// Package storetest is the conformance suite every store.Store
// implementation passes: each implementation's tests call Run with a
// function opening a fresh, empty store (a new SQLite file, a new
// PostgreSQL database).
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store"
)

// Open returns a fresh, empty store and closes it when t ends.
type Open func(t *testing.T) store.Store

// Run runs the conformance suite, each case on a store of its own.
func Run(t *testing.T, open Open) {
	cases := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"PingSucceedsOnAnOpenStore", testPing},
		{"IngestingTheSameBatchTwiceStoresEachAlertOnce", testIngestTwice},
		{"AReplayMergesCountStartAndEndTime", testReplayMerge},
		{"AReplayNeverReopensADismissedAlert", testReplayKeepsDismissed},
		{"AnAlertIngestedWithAStatusKeepsIt", testIngestStatus},
		{"DuplicatesWithinOneBatchAreMerged", testDuplicatesInBatch},
		{"AStoredAlertReadsBackAsIngested", testAlertRoundTrip},
		{"AnEmptyBatchIsANoOpAndAnAlertWithoutIDIsRejected", testIngestEdge},
		{"ConcurrentIngestOfOverlappingBatchesStoresEachAlertOnce", testConcurrentIngest},
		{"FiltersSelectTheMatchingAlertsAndCountAgrees", testFilters},
		{"EachOrderSortsNewestOrMostFirst", testOrders},
		{"PagingVisitsEveryAlertOnceInOrder", testPaging},
		{"PageSizeDefaultsTo100AndIsCappedAt1000", testPageLimits},
		{"AForeignOrDamagedCursorIsRejected", testBadCursor},
		{"UpdatingAnAlertStatusRecordsWhoAndWhen", testUpdateStatus},
		{"ResourceGroupsAreCreatedListedAndDeletedWhenEmpty", testResourceGroups},
		{"PuttingAClusterCreatesItsResourceGroupAndAnUpdateKeepsItsConnectivity", testPutCluster},
		{"ClustersAreListedBySubscriptionAndGroup", testListClusters},
		{"DeletingAClusterRemovesItsExtensionsTokensAndHealthButKeepsAlerts", testDeleteCluster},
		{"AHeartbeatMakesAClusterConnected", testHeartbeat},
		{"SweepingConnectivityMovesSilentClustersOneStep", testSweep},
		{"GenerationGrowsOnlyWhenTheDesiredStateChanges", testExtensionGeneration},
		{"ConcurrentPutsOfOneExtensionAllSucceed", testConcurrentExtensionPuts},
		{"AnExtensionNeedsItsCluster", testExtensionNeedsCluster},
		{"TheAgentsStatusReportIsRecorded", testReportStatus},
		{"APlanDefaultsToDisabled", testPlan},
		{"SuppressionsAreStoredListedAndDeleted", testSuppressions},
		{"TokensAreFoundByHashRevokedAndTouched", testTokens},
		{"SensorHealthIsKeptPerNodeAndComponent", testSensorHealth},
		{"OutputsAreStoredListedAndDeleted", testOutputs},
		{"SettingsAreStoredAndOverwritten", testSettings},
		{"RunExclusiveRunsOneJobOfANameAtATime", testRunExclusive},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.fn(t, open(t))
		})
	}
}

// ---- fixtures

var (
	// t0 has sub-second precision on purpose.
	t0  = time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC)
	ref = store.ClusterRef{Subscription: "sub-1", ResourceGroup: "rg-1", Name: "prod"}
)

func at(d time.Duration) time.Time { return t0.Add(d) }

// newAlert returns a Medium, Active alert seen once at t0+end.
func newAlert(id string, end time.Duration) store.Alert {
	return store.Alert{Alert: alert.Alert{
		ID:          id,
		AlertType:   "vigil.node/TestAlert",
		DisplayName: "Test alert " + id,
		Description: "A harmless test alert.",
		Severity:    alert.SeverityMedium,
		Status:      alert.StatusActive,
		StartTime:   at(end),
		EndTime:     at(end),
		Count:       1,
		Entities: alert.Entities{
			Node:      "node-1",
			Namespace: "default",
			Pod:       "web-0",
			Container: &event.Container{ID: "abc", Image: "nginx:1.27"},
			Process:   &alert.Process{Path: "/bin/sh", CommandLine: "sh -c true"},
		},
	}}
}

func mustCluster(t *testing.T, s store.Store, r store.ClusterRef) store.Cluster {
	t.Helper()
	c, err := s.PutCluster(t.Context(), store.Cluster{ClusterRef: r, Location: "eu-west"})
	if err != nil {
		t.Fatalf("put cluster %s: %v", r.Name, err)
	}
	return c
}

func mustIngest(t *testing.T, s store.Store, r store.ClusterRef, alerts ...store.Alert) store.IngestResult {
	t.Helper()
	res, err := s.IngestAlerts(t.Context(), r, alerts)
	if err != nil {
		t.Fatalf("ingest %d alerts: %v", len(alerts), err)
	}
	return res
}

func mustGetAlert(t *testing.T, s store.Store, id string) store.Alert {
	t.Helper()
	a, err := s.GetAlert(t.Context(), id)
	if err != nil {
		t.Fatalf("get alert %s: %v", id, err)
	}
	return a
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: error %v, want one wrapping %q", what, err, target)
	}
}

func wantEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Fatalf("%s:\ngot  %s\nwant %s", what, g, w)
	}
}

func ids(alerts []store.Alert) []string {
	out := make([]string, len(alerts))
	for i, a := range alerts {
		out[i] = a.ID
	}
	return out
}

// ---- alerts

func testPing(t *testing.T, s store.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("ping: %v", err)
	}
}

func testIngestTwice(t *testing.T, s store.Store) {
	batch := []store.Alert{newAlert("a", 0), newAlert("b", time.Second), newAlert("c", 2*time.Second)}
	if got := mustIngest(t, s, ref, batch...); got != (store.IngestResult{Inserted: 3}) {
		t.Fatalf("first ingest: %+v, want 3 inserted", got)
	}
	first := make([]store.Alert, 0, 3)
	for _, a := range batch {
		first = append(first, mustGetAlert(t, s, a.ID))
	}
	if got := mustIngest(t, s, ref, batch...); got != (store.IngestResult{Unchanged: 3}) {
		t.Fatalf("second ingest of the same batch: %+v, want 3 unchanged", got)
	}
	n, err := s.CountAlerts(t.Context(), store.AlertFilter{})
	if err != nil {
		t.Fatalf("count: %v", err)
	}
	if n != 3 {
		t.Fatalf("%d alerts stored after ingesting a batch of 3 twice, want 3", n)
	}
	for i, a := range batch {
		wantEqual(t, "alert "+a.ID+" after the replay", mustGetAlert(t, s, a.ID), first[i])
	}
}

func testReplayMerge(t *testing.T, s store.Store) {
	stored := newAlert("x", 0)
	stored.StartTime, stored.EndTime, stored.Count = at(10*time.Second), at(20*time.Second), 5
	cases := []struct {
		name               string
		start, end         time.Duration
		count              int
		wantStart, wantEnd time.Duration
		wantCount          int
		wantResult         store.IngestResult
	}{
		{"a larger count wins", 10 * time.Second, 20 * time.Second, 9, 10 * time.Second, 20 * time.Second, 9, store.IngestResult{Updated: 1}},
		{"a smaller count loses", 10 * time.Second, 20 * time.Second, 2, 10 * time.Second, 20 * time.Second, 5, store.IngestResult{Unchanged: 1}},
		{"an earlier start wins", 5 * time.Second, 20 * time.Second, 5, 5 * time.Second, 20 * time.Second, 5, store.IngestResult{Updated: 1}},
		{"a later end wins", 10 * time.Second, 30 * time.Second, 1, 10 * time.Second, 30 * time.Second, 5, store.IngestResult{Updated: 1}},
		{"a window inside the stored one changes nothing", 12 * time.Second, 18 * time.Second, 3, 10 * time.Second, 20 * time.Second, 5, store.IngestResult{Unchanged: 1}},
		{"all three grow at once", time.Second, time.Minute, 50, time.Second, time.Minute, 50, store.IngestResult{Updated: 1}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := stored
			a.ID = fmt.Sprintf("x-%d", i)
			mustIngest(t, s, ref, a)
			r := a
			r.StartTime, r.EndTime, r.Count = at(c.start), at(c.end), c.count
			r.DisplayName = "a replay's other fields do not overwrite the stored ones"
			if got := mustIngest(t, s, ref, r); got != c.wantResult {
				t.Fatalf("replay result %+v, want %+v", got, c.wantResult)
			}
			got := mustGetAlert(t, s, a.ID)
			if !got.StartTime.Equal(at(c.wantStart)) || !got.EndTime.Equal(at(c.wantEnd)) || got.Count != c.wantCount {
				t.Fatalf("after the replay: start %v end %v count %d, want start %v end %v count %d",
					got.StartTime, got.EndTime, got.Count, at(c.wantStart), at(c.wantEnd), c.wantCount)
			}
			if got.DisplayName != a.DisplayName {
				t.Fatalf("displayName %q after a replay, want the stored %q", got.DisplayName, a.DisplayName)
			}
		})
	}
}

func testReplayKeepsDismissed(t *testing.T, s store.Store) {
	a := newAlert("d", 0)
	mustIngest(t, s, ref, a)
	when := at(time.Hour)
	if _, err := s.UpdateAlertStatus(t.Context(), "d", alert.StatusDismissed, "alice", when); err != nil {
		t.Fatalf("dismiss: %v", err)
	}
	r := a
	r.Count, r.EndTime, r.Status = 7, at(2*time.Hour), alert.StatusActive
	if got := mustIngest(t, s, ref, r); got != (store.IngestResult{Updated: 1}) {
		t.Fatalf("replay result %+v, want 1 updated", got)
	}
	got := mustGetAlert(t, s, "d")
	if got.Status != alert.StatusDismissed || got.StatusChangedBy != "alice" || !got.StatusChangedAt.Equal(when) {
		t.Fatalf("after a replay: status %q by %q at %v, want Dismissed by alice at %v", got.Status, got.StatusChangedBy, got.StatusChangedAt, when)
	}
	if got.Count != 7 || !got.EndTime.Equal(at(2*time.Hour)) {
		t.Fatalf("after a replay of a dismissed alert: count %d end %v, want 7 and %v (it still counts)", got.Count, got.EndTime, at(2*time.Hour))
	}
}

func testIngestStatus(t *testing.T, s store.Store) {
	suppressed := newAlert("suppressed", 0)
	suppressed.Status = alert.StatusDismissed
	suppressed.StatusChangedBy = "suppression:noisy"
	suppressed.StatusChangedAt = at(0)
	unset := newAlert("unset", 0)
	unset.Status = ""
	mustIngest(t, s, ref, suppressed, unset)
	got := mustGetAlert(t, s, "suppressed")
	if got.Status != alert.StatusDismissed || got.StatusChangedBy != "suppression:noisy" || !got.StatusChangedAt.Equal(at(0)) {
		t.Fatalf("suppressed alert stored as %q by %q at %v, want Dismissed by suppression:noisy at %v", got.Status, got.StatusChangedBy, got.StatusChangedAt, at(0))
	}
	if got := mustGetAlert(t, s, "unset"); got.Status != alert.StatusActive {
		t.Fatalf("alert without status stored as %q, want Active", got.Status)
	}
}

func testDuplicatesInBatch(t *testing.T, s store.Store) {
	a1, a2 := newAlert("dup", 0), newAlert("dup", time.Minute)
	a2.Count = 3
	got := mustIngest(t, s, ref, a1, a2, a1)
	if want := (store.IngestResult{Inserted: 1, Updated: 1, Unchanged: 1}); got != want {
		t.Fatalf("result %+v, want %+v", got, want)
	}
	a := mustGetAlert(t, s, "dup")
	if a.Count != 3 || !a.StartTime.Equal(at(0)) || !a.EndTime.Equal(at(time.Minute)) {
		t.Fatalf("merged alert count %d start %v end %v, want 3, %v, %v", a.Count, a.StartTime, a.EndTime, at(0), at(time.Minute))
	}
}

func testAlertRoundTrip(t *testing.T, s store.Store) {
	a := newAlert("full", 0)
	a.StartTime, a.EndTime, a.Count = at(-time.Minute), at(time.Second+7), 42
	a.Severity = alert.SeverityHigh
	a.Tactics, a.Techniques = []string{"Execution"}, []string{"T1059"}
	a.RemediationSteps = []string{"Isolate the pod.", "Rotate secrets."}
	a.Maturity, a.Detector, a.ResourceID = "stable", "cpu", "/subscriptions/sub-1/resourceGroups/rg-1/providers/Vigil.Kubernetes/connectedClusters/prod"
	a.Entities.Parent = &alert.Process{Path: "/usr/bin/bash", CommandLine: "bash", PID: 9, UID: 1000, User: "app"}
	a.Entities.Process = &alert.Process{Path: "/tmp/xmrig", CommandLine: "xmrig --donate-level 1 ünïcödé", PID: 10, StartTime: at(-time.Hour)}
	a.Entities.Network = &alert.Network{IP: "203.0.113.9", Port: 3333, Domain: "pool.example"}
	a.Entities.Facts = map[string]string{"cpuPercent": "97"}
	a.Entities.Extra = map[string][]string{"k": {"v1", "v2"}}
	a.Entities.Ancestry = []event.ProcessRef{{PID: 1}}
	// What the caller passes as cluster is replaced by the batch's.
	a.Cluster = store.ClusterRef{Subscription: "other", ResourceGroup: "other", Name: "other"}
	before := time.Now()
	mustIngest(t, s, ref, a)
	got := mustGetAlert(t, s, "full")
	if got.IngestedAt.Before(before.Add(-time.Minute)) || got.IngestedAt.After(time.Now().Add(time.Minute)) {
		t.Fatalf("ingestedAt %v, want about now", got.IngestedAt)
	}
	if got.IngestedAt.Location() != time.UTC || got.EndTime.Location() != time.UTC {
		t.Fatalf("times come back in %v / %v, want UTC", got.IngestedAt.Location(), got.EndTime.Location())
	}
	want := a
	want.Cluster = ref
	want.IngestedAt = got.IngestedAt
	wantEqual(t, "stored alert", got, want)
	// Sub-second precision survives.
	if got.EndTime.Nanosecond() != at(time.Second+7).Nanosecond() {
		t.Fatalf("endTime %v lost precision, want %v", got.EndTime, at(time.Second+7))
	}
}

func testIngestEdge(t *testing.T, s store.Store) {
	if got, err := s.IngestAlerts(t.Context(), ref, nil); err != nil || got != (store.IngestResult{}) {
		t.Fatalf("empty batch: %+v, %v; want nothing, no error", got, err)
	}
	if _, err := s.IngestAlerts(t.Context(), ref, []store.Alert{newAlert("ok", 0), newAlert("", 0)}); err == nil {
		t.Fatalf("a batch with an alert without id was accepted")
	}
	if _, err := s.GetAlert(t.Context(), "ok"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a rejected batch stored part of itself (get ok: %v)", err)
	}
	_, err := s.GetAlert(t.Context(), "missing")
	wantErr(t, "get missing alert", err, store.ErrNotFound)

	// A window needs both ends: a missing one is the other, or now.
	noStart, noTimes := newAlert("no-start", time.Minute), newAlert("no-times", 0)
	noStart.StartTime = time.Time{}
	noTimes.StartTime, noTimes.EndTime = time.Time{}, time.Time{}
	mustIngest(t, s, ref, noStart, noTimes)
	if a := mustGetAlert(t, s, "no-start"); !a.StartTime.Equal(at(time.Minute)) || !a.EndTime.Equal(at(time.Minute)) {
		t.Fatalf("alert without startTime stored with start %v end %v, want both %v", a.StartTime, a.EndTime, at(time.Minute))
	}
	if a := mustGetAlert(t, s, "no-times"); !a.StartTime.Equal(a.IngestedAt) || !a.EndTime.Equal(a.IngestedAt) {
		t.Fatalf("alert without times stored with start %v end %v, want its ingestedAt %v", a.StartTime, a.EndTime, a.IngestedAt)
	}
}

func testConcurrentIngest(t *testing.T, s store.Store) {
	const writers, batches, perBatch, distinct = 6, 10, 50, 120
	idOf := func(w, b, i int) string { return fmt.Sprintf("c-%03d", (w*7+b*perBatch+i)%distinct) }
	// The first batch holding an id sets its start, the last its count and end.
	firstBatch, lastBatch := map[string]int{}, map[string]int{}
	for w := range writers {
		for b := range batches {
			for i := range perBatch {
				id := idOf(w, b, i)
				if f, ok := firstBatch[id]; !ok || b < f {
					firstBatch[id] = b
				}
				lastBatch[id] = max(lastBatch[id], b)
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches+100)
	// Readers run beside the writers and must not fail either.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.ListAlerts(t.Context(), store.AlertFilter{Limit: 50}); err != nil {
				errs <- fmt.Errorf("list while ingesting: %w", err)
				return
			}
		}
	})
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				batch := make([]store.Alert, perBatch)
				for i := range batch {
					a := newAlert(idOf(w, b, i), time.Duration(b)*time.Second)
					a.Count = b + 1
					batch[i] = a
				}
				if _, err := s.IngestAlerts(t.Context(), ref, batch); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent ingest failed (writers must queue, not fail): %v", err)
	}
	n, err := s.CountAlerts(t.Context(), store.AlertFilter{})
	if err != nil {
		t.Fatalf("count: %v", err)
	}
	if n != distinct {
		t.Fatalf("%d alerts stored, want %d distinct ids once each", n, distinct)
	}
	page, err := s.ListAlerts(t.Context(), store.AlertFilter{Limit: 1000})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	for _, a := range page.Alerts {
		f, l := firstBatch[a.ID], lastBatch[a.ID]
		if a.Count != l+1 || !a.EndTime.Equal(at(time.Duration(l)*time.Second)) || !a.StartTime.Equal(at(time.Duration(f)*time.Second)) {
			t.Fatalf("alert %s: count %d start %v end %v, want %d, %v, %v", a.ID, a.Count, a.StartTime, a.EndTime,
				l+1, at(time.Duration(f)*time.Second), at(time.Duration(l)*time.Second))
		}
	}
	if len(page.Alerts) != len(lastBatch) {
		t.Fatalf("listed %d alerts, want %d", len(page.Alerts), len(lastBatch))
	}
}

// seed stores alerts across two subscriptions and clusters for the filter
// and order tests; it returns all ids newest first.
func seed(t *testing.T, s store.Store) {
	t.Helper()
	other := store.ClusterRef{Subscription: "sub-2", ResourceGroup: "rg-9", Name: "edge"}
	mk := func(id string, end time.Duration, sev, status, ns, typ string, count int) store.Alert {
		a := newAlert(id, end)
		a.StartTime = at(end - time.Duration(count)*time.Second)
		a.Severity, a.Status, a.Entities.Namespace, a.AlertType, a.Count = sev, status, ns, typ, count
		return a
	}
	mustIngest(t, s, ref,
		mk("p1", 1*time.Minute, alert.SeverityHigh, alert.StatusActive, "web", "vigil.node/Miner", 3),
		mk("p2", 2*time.Minute, alert.SeverityLow, alert.StatusResolved, "web", "vigil.node/Shell", 10),
		mk("p3", 3*time.Minute, alert.SeverityMedium, alert.StatusDismissed, "db", "vigil.node/Shell", 1),
		mk("p4", 4*time.Minute, alert.SeverityInformational, alert.StatusActive, "db", "vigil.node/Drift", 7),
	)
	e1 := mk("e1", 5*time.Minute, alert.SeverityHigh, alert.StatusActive, "web", "vigil.node/Miner", 2)
	e1.Entities.Process = &alert.Process{Path: "/tmp/XMRig", CommandLine: "xmrig -o pool"}
	e1.DisplayName = "Digital currency mining"
	e2 := mk("e2", 6*time.Minute, alert.SeverityMedium, alert.StatusActive, "kube-system", "vigil.node/Shell", 5)
	e2.Entities.Container.Image = "registry.example/Tools:100%_off"
	e2.Entities.Pod = "debug-pod"
	mustIngest(t, s, other, e1, e2)
}

func testFilters(t *testing.T, s store.Store) {
	seed(t, s)
	cases := []struct {
		name string
		f    store.AlertFilter
		want []string // newest first
	}{
		{"no filter", store.AlertFilter{}, []string{"e2", "e1", "p4", "p3", "p2", "p1"}},
		{"subscription", store.AlertFilter{Subscription: "sub-2"}, []string{"e2", "e1"}},
		{"resource group", store.AlertFilter{ResourceGroup: "rg-1"}, []string{"p4", "p3", "p2", "p1"}},
		{"cluster", store.AlertFilter{Cluster: "edge"}, []string{"e2", "e1"}},
		{"subscription, group and cluster", store.AlertFilter{Subscription: "sub-1", ResourceGroup: "rg-1", Cluster: "prod"}, []string{"p4", "p3", "p2", "p1"}},
		{"unknown cluster", store.AlertFilter{Cluster: "nope"}, nil},
		{"one severity", store.AlertFilter{Severity: []string{alert.SeverityHigh}}, []string{"e1", "p1"}},
		{"two severities", store.AlertFilter{Severity: []string{alert.SeverityLow, alert.SeverityInformational}}, []string{"p4", "p2"}},
		{"status", store.AlertFilter{Status: []string{alert.StatusActive}}, []string{"e2", "e1", "p4", "p1"}},
		{"two statuses", store.AlertFilter{Status: []string{alert.StatusResolved, alert.StatusDismissed}}, []string{"p3", "p2"}},
		{"namespace", store.AlertFilter{Namespace: "db"}, []string{"p4", "p3"}},
		{"alert type", store.AlertFilter{AlertType: "vigil.node/Shell"}, []string{"e2", "p3", "p2"}},
		{"since is inclusive", store.AlertFilter{Since: at(4 * time.Minute)}, []string{"e2", "e1", "p4"}},
		{"until is inclusive", store.AlertFilter{Until: at(2 * time.Minute)}, []string{"p2", "p1"}},
		{"since and until", store.AlertFilter{Since: at(2 * time.Minute), Until: at(5*time.Minute - time.Nanosecond)}, []string{"p4", "p3", "p2"}},
		{"text in the process path, any case", store.AlertFilter{Text: "xmrIG"}, []string{"e1"}},
		{"text in the display name", store.AlertFilter{Text: "currency"}, []string{"e1"}},
		{"text in the image", store.AlertFilter{Text: "tools"}, []string{"e2"}},
		{"text in the pod", store.AlertFilter{Text: "debug-p"}, []string{"e2"}},
		{"text in the description", store.AlertFilter{Text: "harmless"}, []string{"e2", "e1", "p4", "p3", "p2", "p1"}},
		{"text wildcards are literal", store.AlertFilter{Text: "100%_off"}, []string{"e2"}},
		{"a % alone matches only a literal %", store.AlertFilter{Text: "%"}, []string{"e2"}},
		{"an _ alone matches only a literal _", store.AlertFilter{Text: "_"}, []string{"e2"}},
		{"text nowhere", store.AlertFilter{Text: "no such thing"}, nil},
		{"everything at once", store.AlertFilter{Subscription: "sub-1", Severity: []string{alert.SeverityHigh, alert.SeverityMedium},
			Status: []string{alert.StatusActive, alert.StatusDismissed}, Since: at(time.Minute), Text: "test alert"}, []string{"p3", "p1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			page, err := s.ListAlerts(t.Context(), c.f)
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			got := ids(page.Alerts)
			if len(got) == 0 {
				got = nil
			}
			wantEqual(t, "alerts", got, c.want)
			if page.NextCursor != "" {
				t.Fatalf("next cursor %q on the only page", page.NextCursor)
			}
			n, err := s.CountAlerts(t.Context(), c.f)
			if err != nil {
				t.Fatalf("count: %v", err)
			}
			if n != len(c.want) {
				t.Fatalf("count %d, want %d", n, len(c.want))
			}
		})
	}
}

func testOrders(t *testing.T, s store.Store) {
	seed(t, s)
	cases := []struct {
		order string
		want  []string
	}{
		{"", []string{"e2", "e1", "p4", "p3", "p2", "p1"}},
		{"endTime", []string{"e2", "e1", "p4", "p3", "p2", "p1"}},
		// startTime = endTime - count seconds.
		{"startTime", []string{"e2", "e1", "p4", "p3", "p2", "p1"}},
		{"severity", []string{"e1", "p1", "e2", "p3", "p2", "p4"}},
		{"count", []string{"p2", "p4", "e2", "p1", "e1", "p3"}},
	}
	for _, c := range cases {
		t.Run("order "+c.order, func(t *testing.T) {
			page, err := s.ListAlerts(t.Context(), store.AlertFilter{Order: c.order})
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			wantEqual(t, "order", ids(page.Alerts), c.want)
		})
	}
	if _, err := s.ListAlerts(t.Context(), store.AlertFilter{Order: "name"}); err == nil {
		t.Fatalf("an unknown order was accepted")
	}
}

func testPaging(t *testing.T, s store.Store) {
	// 40 alerts in groups sharing endTime (and count and severity), so
	// every order has ties that paging must not lose or repeat.
	var batch []store.Alert
	for i := range 40 {
		a := newAlert(fmt.Sprintf("pg-%02d", i), time.Duration(i/4)*time.Second)
		a.Count = 1 + i%3
		a.Severity = []string{alert.SeverityLow, alert.SeverityHigh}[i%2]
		batch = append(batch, a)
	}
	mustIngest(t, s, ref, batch...)
	for _, order := range []string{"endTime", "startTime", "severity", "count"} {
		for _, limit := range []int{1, 3, 4, 7, 39, 40} {
			t.Run(fmt.Sprintf("%s by %d", order, limit), func(t *testing.T) {
				all, err := s.ListAlerts(t.Context(), store.AlertFilter{Order: order, Limit: 1000})
				if err != nil {
					t.Fatalf("list all: %v", err)
				}
				var got []string
				f := store.AlertFilter{Order: order, Limit: limit}
				for pages := 0; ; pages++ {
					if pages > 40 {
						t.Fatalf("paging does not end")
					}
					page, err := s.ListAlerts(t.Context(), f)
					if err != nil {
						t.Fatalf("page %d: %v", pages, err)
					}
					if len(page.Alerts) > limit {
						t.Fatalf("page of %d alerts, limit %d", len(page.Alerts), limit)
					}
					got = append(got, ids(page.Alerts)...)
					if page.NextCursor == "" {
						break
					}
					f.Cursor = page.NextCursor
				}
				wantEqual(t, "alerts over all pages", got, ids(all.Alerts))
				if len(got) != 40 {
					t.Fatalf("%d alerts over all pages, want 40", len(got))
				}
			})
		}
	}
	t.Run("with a filter", func(t *testing.T) {
		f := store.AlertFilter{Severity: []string{alert.SeverityHigh}, Limit: 6}
		var got []string
		for {
			page, err := s.ListAlerts(t.Context(), f)
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			for _, a := range page.Alerts {
				if a.Severity != alert.SeverityHigh {
					t.Fatalf("page holds %s of severity %s", a.ID, a.Severity)
				}
			}
			got = append(got, ids(page.Alerts)...)
			if f.Cursor = page.NextCursor; f.Cursor == "" {
				break
			}
		}
		sorted := slices.Clone(got)
		sort.Strings(sorted)
		if len(slices.Compact(sorted)) != 20 || len(got) != 20 {
			t.Fatalf("%d alerts (%d distinct) over the pages, want the 20 High ones once each", len(got), len(slices.Compact(sorted)))
		}
	})
	t.Run("alerts ingested while paging do not shift later pages", func(t *testing.T) {
		page, err := s.ListAlerts(t.Context(), store.AlertFilter{Limit: 10})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		mustIngest(t, s, ref, newAlert("newer", time.Hour))
		next, err := s.ListAlerts(t.Context(), store.AlertFilter{Limit: 10, Cursor: page.NextCursor})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		all, err := s.ListAlerts(t.Context(), store.AlertFilter{Limit: 21})
		if err != nil {
			t.Fatalf("list: %v", err)
		}
		wantEqual(t, "second page", ids(next.Alerts), ids(all.Alerts[11:21]))
	})
}

func testPageLimits(t *testing.T, s store.Store) {
	batch := make([]store.Alert, 1001)
	for i := range batch {
		batch[i] = newAlert(fmt.Sprintf("l-%04d", i), time.Duration(i)*time.Millisecond)
	}
	mustIngest(t, s, ref, batch...)
	for _, c := range []struct {
		limit, want int
	}{{0, 100}, {-1, 100}, {5, 5}, {1000, 1000}, {5000, 1000}} {
		page, err := s.ListAlerts(t.Context(), store.AlertFilter{Limit: c.limit})
		if err != nil {
			t.Fatalf("list with limit %d: %v", c.limit, err)
		}
		if len(page.Alerts) != c.want || page.NextCursor == "" {
			t.Fatalf("limit %d: page of %d (next cursor %q), want %d and a next cursor", c.limit, len(page.Alerts), page.NextCursor, c.want)
		}
	}
}

func testBadCursor(t *testing.T, s store.Store) {
	var batch []store.Alert
	for i := range 5 {
		batch = append(batch, newAlert(fmt.Sprintf("b-%d", i), time.Duration(i)*time.Second))
	}
	mustIngest(t, s, ref, batch...)
	page, err := s.ListAlerts(t.Context(), store.AlertFilter{Limit: 2})
	if err != nil || page.NextCursor == "" {
		t.Fatalf("first page: next %q, %v", page.NextCursor, err)
	}
	for _, f := range []store.AlertFilter{
		{Cursor: "not a cursor"},
		{Cursor: page.NextCursor[:len(page.NextCursor)-3]},
		{Cursor: page.NextCursor, Order: "count"},
	} {
		if _, err := s.ListAlerts(t.Context(), f); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("cursor %q with order %q: error %v, want store.ErrInvalid", f.Cursor, f.Order, err)
		}
	}
}

func testUpdateStatus(t *testing.T, s store.Store) {
	mustIngest(t, s, ref, newAlert("u", 0))
	when := time.Date(2026, 11, 25, 12, 0, 0, 5, time.FixedZone("CET", 3600))
	got, err := s.UpdateAlertStatus(t.Context(), "u", alert.StatusResolved, "bob", when)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if got.Status != alert.StatusResolved || got.StatusChangedBy != "bob" || !got.StatusChangedAt.Equal(when) || got.StatusChangedAt.Location() != time.UTC {
		t.Fatalf("returned %q by %q at %v, want Resolved by bob at %v in UTC", got.Status, got.StatusChangedBy, got.StatusChangedAt, when.UTC())
	}
	wantEqual(t, "stored alert", mustGetAlert(t, s, "u"), got)
	_, err = s.UpdateAlertStatus(t.Context(), "nope", alert.StatusResolved, "bob", when)
	wantErr(t, "update a missing alert", err, store.ErrNotFound)
	if _, err := s.UpdateAlertStatus(t.Context(), "u", "Closed", "bob", when); err == nil {
		t.Fatalf("an unknown status was accepted")
	}
	if got := mustGetAlert(t, s, "u"); got.Status != alert.StatusResolved {
		t.Fatalf("a rejected update changed the status to %q", got.Status)
	}
}

// ---- resource groups and clusters

func testResourceGroups(t *testing.T, s store.Store) {
	ctx := t.Context()
	rg, err := s.PutResourceGroup(ctx, store.ResourceGroup{Subscription: "sub-1", Name: "rg-a", Location: "eu", Tags: map[string]string{"team": "sec"}})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if rg.CreatedAt.IsZero() || rg.Tags["team"] != "sec" || rg.Location != "eu" {
		t.Fatalf("put returned %+v", rg)
	}
	rg2, err := s.PutResourceGroup(ctx, store.ResourceGroup{Subscription: "sub-1", Name: "rg-a", Location: "us"})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if !rg2.CreatedAt.Equal(rg.CreatedAt) || rg2.Location != "us" || rg2.Tags != nil {
		t.Fatalf("update returned %+v, want location us, no tags, createdAt kept", rg2)
	}
	got, err := s.GetResourceGroup(ctx, "sub-1", "rg-a")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	wantEqual(t, "stored group", got, rg2)
	_, err = s.GetResourceGroup(ctx, "sub-1", "nope")
	wantErr(t, "get missing group", err, store.ErrNotFound)
	mustCluster(t, s, store.ClusterRef{Subscription: "sub-1", ResourceGroup: "rg-b", Name: "c"})
	mustCluster(t, s, store.ClusterRef{Subscription: "sub-2", ResourceGroup: "rg-c", Name: "c"})
	for _, c := range []struct {
		sub  string
		want []string
	}{{"sub-1", []string{"rg-a", "rg-b"}}, {"sub-2", []string{"rg-c"}}, {"", []string{"rg-a", "rg-b", "rg-c"}}, {"sub-3", nil}} {
		list, err := s.ListResourceGroups(ctx, c.sub)
		if err != nil {
			t.Fatalf("list %s: %v", c.sub, err)
		}
		var names []string
		for _, g := range list {
			names = append(names, g.Name)
		}
		wantEqual(t, "groups of subscription "+c.sub, names, c.want)
	}
	err = s.DeleteResourceGroup(ctx, "sub-1", "rg-b")
	wantErr(t, "delete a group holding a cluster", err, store.ErrConflict)
	if err := s.DeleteCluster(ctx, store.ClusterRef{Subscription: "sub-1", ResourceGroup: "rg-b", Name: "c"}); err != nil {
		t.Fatalf("delete cluster: %v", err)
	}
	if err := s.DeleteResourceGroup(ctx, "sub-1", "rg-b"); err != nil {
		t.Fatalf("delete the emptied group: %v", err)
	}
	err = s.DeleteResourceGroup(ctx, "sub-1", "rg-b")
	wantErr(t, "delete a deleted group", err, store.ErrNotFound)
}

func testPutCluster(t *testing.T, s store.Store) {
	ctx := t.Context()
	before := time.Now().Add(-time.Minute)
	c, err := s.PutCluster(ctx, store.Cluster{ClusterRef: ref, Location: "eu", Distribution: "k3s", Tags: map[string]string{"env": "prod"}})
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if c.ConnectivityStatus != store.Connecting || c.ProvisioningState != store.ProvisioningSucceeded || c.CreatedAt.Before(before) || c.UpdatedAt.IsZero() {
		t.Fatalf("new cluster %+v: want Connecting, Succeeded, created now", c)
	}
	rg, err := s.GetResourceGroup(ctx, ref.Subscription, ref.ResourceGroup)
	if err != nil {
		t.Fatalf("the cluster's resource group was not created on demand: %v", err)
	}
	if rg.Location != "eu" {
		t.Fatalf("resource group created with location %q, want the cluster's eu", rg.Location)
	}
	hb := at(0)
	if err := s.RecordHeartbeat(ctx, ref, store.Heartbeat{AgentVersion: "1.0", KubernetesVersion: "1.31", NodeCount: 3, At: hb}); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	u, err := s.PutCluster(ctx, store.Cluster{ClusterRef: ref, Location: "us", Distribution: "kubeadm", ConnectivityStatus: store.Offline})
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	if u.ConnectivityStatus != store.Connected || !u.LastHeartbeat.Equal(hb) || !u.CreatedAt.Equal(c.CreatedAt) {
		t.Fatalf("update changed connectivity %q, heartbeat %v or createdAt %v; want Connected, %v, %v", u.ConnectivityStatus, u.LastHeartbeat, u.CreatedAt, hb, c.CreatedAt)
	}
	if u.Location != "us" || u.Distribution != "kubeadm" || u.Tags != nil {
		t.Fatalf("update did not take location %q, distribution %q, tags %v", u.Location, u.Distribution, u.Tags)
	}
	if u.AgentVersion != "1.0" || u.KubernetesVersion != "1.31" || u.NodeCount != 3 {
		t.Fatalf("update lost what the agent reported: %+v", u)
	}
	got, err := s.GetCluster(ctx, ref)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	wantEqual(t, "stored cluster", got, u)
	_, err = s.GetCluster(ctx, store.ClusterRef{Subscription: "sub-1", ResourceGroup: "rg-1", Name: "nope"})
	wantErr(t, "get a missing cluster", err, store.ErrNotFound)
}

func testListClusters(t *testing.T, s store.Store) {
	refs := []store.ClusterRef{
		{Subscription: "s1", ResourceGroup: "a", Name: "x"},
		{Subscription: "s1", ResourceGroup: "a", Name: "w"},
		{Subscription: "s1", ResourceGroup: "b", Name: "y"},
		{Subscription: "s2", ResourceGroup: "a", Name: "z"},
	}
	for _, r := range refs {
		mustCluster(t, s, r)
	}
	for _, c := range []struct {
		sub, rg string
		want    []string
	}{
		{"s1", "", []string{"w", "x", "y"}},
		{"s1", "a", []string{"w", "x"}},
		{"s2", "", []string{"z"}},
		{"", "", []string{"w", "x", "y", "z"}},
		{"s3", "", nil},
	} {
		list, err := s.ListClusters(t.Context(), c.sub, c.rg)
		if err != nil {
			t.Fatalf("list %s/%s: %v", c.sub, c.rg, err)
		}
		var names []string
		for _, cl := range list {
			names = append(names, cl.Name)
		}
		wantEqual(t, "clusters of "+c.sub+"/"+c.rg, names, c.want)
	}
}

func testDeleteCluster(t *testing.T, s store.Store) {
	ctx := t.Context()
	keep := store.ClusterRef{Subscription: ref.Subscription, ResourceGroup: ref.ResourceGroup, Name: "keep"}
	for _, r := range []store.ClusterRef{ref, keep} {
		mustCluster(t, s, r)
		if _, err := s.PutExtension(ctx, store.Extension{Cluster: r, Name: "sensor", ExtensionType: "vigil.sensor"}); err != nil {
			t.Fatalf("put extension: %v", err)
		}
		if err := s.PutSensorHealth(ctx, store.SensorHealth{Cluster: r, Node: "n1", SourceMode: "ebpf"}); err != nil {
			t.Fatalf("put health: %v", err)
		}
		if err := s.CreateToken(ctx, store.Token{ID: "tok-" + r.Name, Kind: store.TokenSensor, Hash: []byte("hash-" + r.Name), Cluster: r}); err != nil {
			t.Fatalf("create token: %v", err)
		}
	}
	if err := s.CreateToken(ctx, store.Token{ID: "user", Kind: store.TokenUser, Hash: []byte("hash-user"), Role: "Owner", Scope: "/subscriptions/sub-1"}); err != nil {
		t.Fatalf("create user token: %v", err)
	}
	mustIngest(t, s, ref, newAlert("kept", 0))
	if err := s.DeleteCluster(ctx, ref); err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, err := s.GetCluster(ctx, ref)
	wantErr(t, "get the deleted cluster", err, store.ErrNotFound)
	if exts, err := s.ListExtensions(ctx, ref); err != nil || len(exts) != 0 {
		t.Fatalf("extensions of the deleted cluster: %v, %v; want none", exts, err)
	}
	_, err = s.GetExtension(ctx, ref, "sensor")
	wantErr(t, "get an extension of the deleted cluster", err, store.ErrNotFound)
	if hs, err := s.ListSensorHealth(ctx, ref); err != nil || len(hs) != 0 {
		t.Fatalf("health of the deleted cluster: %v, %v; want none", hs, err)
	}
	_, err = s.TokenByHash(ctx, []byte("hash-prod"))
	wantErr(t, "the deleted cluster's token", err, store.ErrNotFound)
	if a := mustGetAlert(t, s, "kept"); a.Cluster != ref {
		t.Fatalf("the deleted cluster's alert names cluster %+v, want %+v", a.Cluster, ref)
	}
	// The other cluster and the user token are untouched.
	if _, err := s.GetExtension(ctx, keep, "sensor"); err != nil {
		t.Fatalf("the other cluster's extension: %v", err)
	}
	if hs, err := s.ListSensorHealth(ctx, keep); err != nil || len(hs) != 1 {
		t.Fatalf("the other cluster's health: %v, %v", hs, err)
	}
	for _, h := range []string{"hash-keep", "hash-user"} {
		if _, err := s.TokenByHash(ctx, []byte(h)); err != nil {
			t.Fatalf("token %s: %v", h, err)
		}
	}
	err = s.DeleteCluster(ctx, ref)
	wantErr(t, "delete the deleted cluster", err, store.ErrNotFound)
}

func testHeartbeat(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCluster(t, s, ref)
	hb := at(time.Minute)
	if err := s.RecordHeartbeat(ctx, ref, store.Heartbeat{AgentVersion: "0.3.0", KubernetesVersion: "v1.31.2", NodeCount: 5, At: hb}); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	c, err := s.GetCluster(ctx, ref)
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if c.ConnectivityStatus != store.Connected || !c.LastHeartbeat.Equal(hb) || c.AgentVersion != "0.3.0" || c.KubernetesVersion != "v1.31.2" || c.NodeCount != 5 {
		t.Fatalf("after a heartbeat: %+v", c)
	}
	// A heartbeat without versions keeps the known ones.
	if err := s.RecordHeartbeat(ctx, ref, store.Heartbeat{At: at(2 * time.Minute)}); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	c, _ = s.GetCluster(ctx, ref)
	if c.AgentVersion != "0.3.0" || c.NodeCount != 5 || !c.LastHeartbeat.Equal(at(2*time.Minute)) {
		t.Fatalf("after a bare heartbeat: %+v", c)
	}
	// A late heartbeat does not move the last one back.
	if err := s.RecordHeartbeat(ctx, ref, store.Heartbeat{At: at(-time.Hour)}); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if c, _ := s.GetCluster(ctx, ref); !c.LastHeartbeat.Equal(at(2 * time.Minute)) {
		t.Fatalf("a late heartbeat moved lastHeartbeat to %v, want %v", c.LastHeartbeat, at(2*time.Minute))
	}
	err = s.RecordHeartbeat(ctx, store.ClusterRef{Subscription: "s", ResourceGroup: "g", Name: "nope"}, store.Heartbeat{At: hb})
	wantErr(t, "heartbeat of a missing cluster", err, store.ErrNotFound)
}

func testSweep(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Clusters are created now (CreatedAt is the store's clock), so the
	// times here are relative to now, not to t0.
	base := time.Now().UTC()
	rel := func(d time.Duration) time.Time { return base.Add(d) }
	offlineBefore, expiredBefore := rel(-5*time.Minute), rel(-24*time.Hour)
	cases := []struct {
		name      string
		heartbeat time.Time // zero: never
		offline   bool      // set Offline first (by an earlier sweep)
		want      string
	}{
		{"fresh heartbeat stays Connected", rel(0), false, store.Connected},
		{"stale heartbeat goes Offline", rel(-10 * time.Minute), false, store.Offline},
		{"very stale heartbeat goes Offline first", rel(-48 * time.Hour), false, store.Offline},
		{"Offline past expiry goes Expired", rel(-48 * time.Hour), true, store.Expired},
		{"Offline before expiry stays Offline", rel(-time.Hour), true, store.Offline},
		// A cluster that never sent a heartbeat expires by its creation.
		{"Connecting created recently stays Connecting", time.Time{}, false, store.Connecting},
	}
	// Only a sweep sets Offline: the clusters that start Offline are
	// created and swept alone first.
	for pass := range 2 {
		for i, c := range cases {
			if c.offline != (pass == 0) {
				continue
			}
			r := store.ClusterRef{Subscription: "s", ResourceGroup: "g", Name: fmt.Sprintf("c%d", i)}
			mustCluster(t, s, r)
			if !c.heartbeat.IsZero() {
				if err := s.RecordHeartbeat(ctx, r, store.Heartbeat{At: c.heartbeat}); err != nil {
					t.Fatalf("heartbeat: %v", err)
				}
			}
			if c.offline {
				if _, err := s.SweepConnectivity(ctx, c.heartbeat.Add(time.Nanosecond), time.Time{}); err != nil {
					t.Fatalf("sweep: %v", err)
				}
			}
		}
	}
	start := map[string]string{}
	for i := range cases {
		c, err := s.GetCluster(ctx, store.ClusterRef{Subscription: "s", ResourceGroup: "g", Name: fmt.Sprintf("c%d", i)})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		start[c.Name] = c.ConnectivityStatus
	}
	n, err := s.SweepConnectivity(ctx, offlineBefore, expiredBefore)
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	changed := 0
	for i, c := range cases {
		name := fmt.Sprintf("c%d", i)
		got, err := s.GetCluster(ctx, store.ClusterRef{Subscription: "s", ResourceGroup: "g", Name: name})
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if got.ConnectivityStatus != c.want {
			t.Errorf("%s: %s, want %s", c.name, got.ConnectivityStatus, c.want)
		}
		if got.ConnectivityStatus != start[name] {
			changed++
		}
	}
	if n != changed {
		t.Fatalf("sweep reported %d changes, %d clusters changed", n, changed)
	}
	// A Connecting cluster that never sent a heartbeat expires by age.
	if n, err := s.SweepConnectivity(ctx, offlineBefore, time.Now().Add(time.Hour)); err != nil || n == 0 {
		t.Fatalf("sweep with expiry in the future: %d, %v", n, err)
	}
	c, _ := s.GetCluster(ctx, store.ClusterRef{Subscription: "s", ResourceGroup: "g", Name: fmt.Sprintf("c%d", len(cases)-1)})
	if c.ConnectivityStatus != store.Expired {
		t.Fatalf("a Connecting cluster created before expiredBefore is %s, want Expired", c.ConnectivityStatus)
	}
	// Heartbeat brings an expired cluster back.
	if err := s.RecordHeartbeat(ctx, c.ClusterRef, store.Heartbeat{At: rel(0)}); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	if c, _ := s.GetCluster(ctx, c.ClusterRef); c.ConnectivityStatus != store.Connected {
		t.Fatalf("after a heartbeat an expired cluster is %s, want Connected", c.ConnectivityStatus)
	}
}

// ---- extensions

func testExtensionGeneration(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCluster(t, s, ref)
	base := store.Extension{Cluster: ref, Name: "sensor", ExtensionType: "vigil.sensor", Version: "0.1.0",
		ConfigurationSettings: map[string]string{"mode": "ebpf", "level": "info"}, ProtectedSettings: []byte("sealed-1")}
	e, err := s.PutExtension(ctx, base)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if e.Generation != 1 || e.AppliedGeneration != 0 || e.ProvisioningState != store.ProvisioningCreating || e.CreatedAt.IsZero() {
		t.Fatalf("new extension: generation %d applied %d state %q created %v; want 1, 0, Creating, now", e.Generation, e.AppliedGeneration, e.ProvisioningState, e.CreatedAt)
	}
	if string(e.ProtectedSettings) != "sealed-1" {
		t.Fatalf("protected settings %q, want sealed-1", e.ProtectedSettings)
	}
	cases := []struct {
		name   string
		change func(e *store.Extension)
		want   int64
	}{
		{"the same desired state", func(e *store.Extension) {}, 1},
		{"an equal map built anew", func(e *store.Extension) {
			e.ConfigurationSettings = map[string]string{"level": "info", "mode": "ebpf"}
		}, 1},
		{"a changed setting", func(e *store.Extension) { e.ConfigurationSettings["level"] = "debug" }, 2},
		{"a removed setting", func(e *store.Extension) { delete(e.ConfigurationSettings, "level") }, 3},
		{"new protected settings", func(e *store.Extension) { e.ProtectedSettings = []byte("sealed-2") }, 4},
		{"a new version", func(e *store.Extension) { e.Version = "0.2.0" }, 5},
		{"the same again", func(e *store.Extension) {}, 5},
		{"no settings at all", func(e *store.Extension) { e.ConfigurationSettings = nil }, 6},
		{"an empty map is no settings", func(e *store.Extension) { e.ConfigurationSettings = map[string]string{} }, 6},
	}
	cur := base
	for _, c := range cases {
		next := cur
		next.ConfigurationSettings = maps(cur.ConfigurationSettings)
		c.change(&next)
		got, err := s.PutExtension(ctx, next)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got.Generation != c.want {
			t.Fatalf("%s: generation %d, want %d", c.name, got.Generation, c.want)
		}
		wantEqual(t, c.name+": configuration", got.ConfigurationSettings, emptyNil(next.ConfigurationSettings))
		if !got.CreatedAt.Equal(e.CreatedAt) {
			t.Fatalf("%s: createdAt %v changed from %v", c.name, got.CreatedAt, e.CreatedAt)
		}
		cur = next
	}
	got, err := s.GetExtension(ctx, ref, "sensor")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.Generation != 6 || got.ProvisioningState != store.ProvisioningCreating && got.ProvisioningState != store.ProvisioningUpdating {
		t.Fatalf("stored extension: generation %d state %q", got.Generation, got.ProvisioningState)
	}
	if _, err := s.PutExtension(ctx, store.Extension{Cluster: ref, Name: "audit", ExtensionType: "vigil.audit"}); err != nil {
		t.Fatalf("put audit: %v", err)
	}
	list, err := s.ListExtensions(ctx, ref)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(list) != 2 || list[0].Name != "audit" || list[1].Name != "sensor" {
		t.Fatalf("list: %v, want audit and sensor", list)
	}
	if err := s.DeleteExtension(ctx, ref, "audit"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, err = s.GetExtension(ctx, ref, "audit")
	wantErr(t, "get the deleted extension", err, store.ErrNotFound)
	err = s.DeleteExtension(ctx, ref, "audit")
	wantErr(t, "delete the deleted extension", err, store.ErrNotFound)
}

func maps(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func emptyNil(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func testConcurrentExtensionPuts(t *testing.T, s store.Store) {
	mustCluster(t, s, ref)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			_, err := s.PutExtension(t.Context(), store.Extension{Cluster: ref, Name: "sensor", ExtensionType: "vigil.sensor", Version: "1"})
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent put of one extension: %v", err)
	}
	e, err := s.GetExtension(t.Context(), ref, "sensor")
	if err != nil || e.Generation != 1 {
		t.Fatalf("after 8 equal puts: generation %d, %v; want 1", e.Generation, err)
	}
}

func testExtensionNeedsCluster(t *testing.T, s store.Store) {
	_, err := s.PutExtension(t.Context(), store.Extension{Cluster: ref, Name: "sensor", ExtensionType: "vigil.sensor"})
	wantErr(t, "put an extension on a missing cluster", err, store.ErrConflict)
	err = s.PutSensorHealth(t.Context(), store.SensorHealth{Cluster: ref, Node: "n1"})
	wantErr(t, "put health of a missing cluster", err, store.ErrConflict)
}

func testReportStatus(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCluster(t, s, ref)
	e := store.Extension{Cluster: ref, Name: "sensor", ExtensionType: "vigil.sensor", Version: "1"}
	if _, err := s.PutExtension(ctx, e); err != nil {
		t.Fatalf("put: %v", err)
	}
	statuses := []store.ExtensionStatus{{Code: "DaemonSetReady", Level: "Information", DisplayStatus: "3/3 ready", Message: "ok", Time: at(time.Second)}}
	if err := s.ReportExtensionStatus(ctx, ref, "sensor", 1, store.ProvisioningSucceeded, statuses); err != nil {
		t.Fatalf("report: %v", err)
	}
	got, err := s.GetExtension(ctx, ref, "sensor")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.AppliedGeneration != 1 || got.ProvisioningState != store.ProvisioningSucceeded {
		t.Fatalf("after the report: applied %d state %q, want 1 Succeeded", got.AppliedGeneration, got.ProvisioningState)
	}
	wantEqual(t, "statuses", got.Statuses, statuses)
	// The desired state moves on; a late report about generation 1 must not
	// mark generation 2 Succeeded.
	e.Version = "2"
	if got, err := s.PutExtension(ctx, e); err != nil || got.Generation != 2 || got.ProvisioningState != store.ProvisioningUpdating {
		t.Fatalf("update: %+v, %v; want generation 2 Updating", got, err)
	}
	if err := s.ReportExtensionStatus(ctx, ref, "sensor", 1, store.ProvisioningSucceeded, statuses); err != nil {
		t.Fatalf("late report: %v", err)
	}
	if got, _ := s.GetExtension(ctx, ref, "sensor"); got.ProvisioningState != store.ProvisioningUpdating || got.AppliedGeneration != 1 {
		t.Fatalf("after a late report: state %q applied %d, want Updating 1", got.ProvisioningState, got.AppliedGeneration)
	}
	if err := s.ReportExtensionStatus(ctx, ref, "sensor", 2, store.ProvisioningFailed, nil); err != nil {
		t.Fatalf("report: %v", err)
	}
	if got, _ := s.GetExtension(ctx, ref, "sensor"); got.ProvisioningState != store.ProvisioningFailed || got.AppliedGeneration != 2 || got.Statuses != nil {
		t.Fatalf("after reporting Failed: %+v", got)
	}
	err = s.ReportExtensionStatus(ctx, ref, "sensor", 3, store.ProvisioningSucceeded, nil)
	wantErr(t, "report a generation never issued", err, store.ErrConflict)
	err = s.ReportExtensionStatus(ctx, ref, "nope", 1, store.ProvisioningSucceeded, nil)
	wantErr(t, "report for a missing extension", err, store.ErrNotFound)
}

// ---- plans, suppressions, tokens, health, outputs, settings

func testPlan(t *testing.T, s store.Store) {
	ctx := t.Context()
	p, err := s.GetPlan(ctx, "sub-1")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	wantEqual(t, "default plan", p, store.Plan{Subscription: "sub-1"})
	in := store.Plan{Subscription: "sub-1", Enabled: true, Components: map[string]bool{"runtimeDetection": true, "auditDetection": false}, UpdatedBy: "alice"}
	put, err := s.PutPlan(ctx, in)
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	if put.UpdatedAt.IsZero() {
		t.Fatalf("put plan has no updatedAt")
	}
	in.UpdatedAt = put.UpdatedAt
	wantEqual(t, "put plan", put, in)
	got, err := s.GetPlan(ctx, "sub-1")
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	wantEqual(t, "stored plan", got, in)
	if other, _ := s.GetPlan(ctx, "sub-2"); other.Enabled {
		t.Fatalf("another subscription's plan is enabled")
	}
	in.Enabled = false
	if got, err := s.PutPlan(ctx, in); err != nil || got.Enabled {
		t.Fatalf("disable: %+v, %v", got, err)
	}
}

func testSuppressions(t *testing.T, s store.Store) {
	ctx := t.Context()
	in := store.Suppression{Subscription: "sub-1", Name: "curl-in-web", Match: map[string]string{"alertType": "vigil.node/Shell", "entities.namespace": "web"},
		Reason: "expected", Expires: at(30 * 24 * time.Hour), CreatedBy: "alice", CreatedAt: at(0)}
	got, err := s.PutSuppression(ctx, in)
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	wantEqual(t, "put suppression", got, in)
	upd := in
	upd.Reason, upd.Expires, upd.CreatedAt = "still expected", time.Time{}, at(time.Hour)
	got, err = s.PutSuppression(ctx, upd)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	upd.CreatedAt = in.CreatedAt
	wantEqual(t, "updated suppression (createdAt kept)", got, upd)
	if _, err := s.PutSuppression(ctx, store.Suppression{Subscription: "sub-1", Name: "another", Match: map[string]string{"alertType": "x"}}); err != nil {
		t.Fatalf("put: %v", err)
	}
	if _, err := s.PutSuppression(ctx, store.Suppression{Subscription: "sub-2", Name: "elsewhere", Match: map[string]string{"alertType": "x"}}); err != nil {
		t.Fatalf("put: %v", err)
	}
	list, err := s.ListSuppressions(ctx, "sub-1")
	if err != nil || len(list) != 2 || list[0].Name != "another" || list[1].Name != "curl-in-web" {
		t.Fatalf("list: %v, %v; want another and curl-in-web", list, err)
	}
	if err := s.DeleteSuppression(ctx, "sub-1", "curl-in-web"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	_, err = s.GetSuppression(ctx, "sub-1", "curl-in-web")
	wantErr(t, "get the deleted suppression", err, store.ErrNotFound)
	err = s.DeleteSuppression(ctx, "sub-1", "curl-in-web")
	wantErr(t, "delete the deleted suppression", err, store.ErrNotFound)
}

func testTokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCluster(t, s, ref)
	in := store.Token{ID: "t1", Name: "ci", Kind: store.TokenUser, Hash: []byte{0, 1, 2, 255}, Role: "Contributor", Scope: "/subscriptions/sub-1",
		CreatedBy: "alice", CreatedAt: at(0), ExpiresAt: at(24 * time.Hour)}
	if err := s.CreateToken(ctx, in); err != nil {
		t.Fatalf("create: %v", err)
	}
	sensor := store.Token{ID: "t2", Kind: store.TokenSensor, Hash: []byte("sensor-hash"), Cluster: ref, CreatedAt: at(time.Second)}
	if err := s.CreateToken(ctx, sensor); err != nil {
		t.Fatalf("create: %v", err)
	}
	got, err := s.TokenByHash(ctx, []byte{0, 1, 2, 255})
	if err != nil {
		t.Fatalf("by hash: %v", err)
	}
	wantEqual(t, "token by hash", got, in)
	if got, err := s.TokenByHash(ctx, []byte("sensor-hash")); err != nil || got.Cluster != ref {
		t.Fatalf("sensor token: %+v, %v", got, err)
	}
	_, err = s.TokenByHash(ctx, []byte("unknown"))
	wantErr(t, "unknown hash", err, store.ErrNotFound)
	dupID := in
	dupID.Hash = []byte("other")
	wantErr(t, "a token with a taken id", s.CreateToken(ctx, dupID), store.ErrConflict)
	dupHash := in
	dupHash.ID = "t3"
	wantErr(t, "a token with a taken hash", s.CreateToken(ctx, dupHash), store.ErrConflict)

	if err := s.TouchToken(ctx, "t1", at(time.Minute)); err != nil {
		t.Fatalf("touch: %v", err)
	}
	if err := s.TouchToken(ctx, "t1", at(time.Second)); err != nil {
		t.Fatalf("touch: %v", err)
	}
	if got, _ := s.TokenByHash(ctx, in.Hash); !got.LastUsed.Equal(at(time.Minute)) {
		t.Fatalf("lastUsed %v, want the latest use %v", got.LastUsed, at(time.Minute))
	}
	if err := s.RevokeToken(ctx, "t1", at(time.Hour)); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	if err := s.RevokeToken(ctx, "t1", at(2*time.Hour)); err != nil {
		t.Fatalf("revoke again: %v", err)
	}
	got, err = s.TokenByHash(ctx, in.Hash)
	if err != nil {
		t.Fatalf("a revoked token must still be found (the caller decides): %v", err)
	}
	if !got.RevokedAt.Equal(at(time.Hour)) {
		t.Fatalf("revokedAt %v, want the first revocation %v", got.RevokedAt, at(time.Hour))
	}
	wantErr(t, "revoke a missing token", s.RevokeToken(ctx, "nope", at(0)), store.ErrNotFound)
	wantErr(t, "touch a missing token", s.TouchToken(ctx, "nope", at(0)), store.ErrNotFound)
	list, err := s.ListTokens(ctx)
	if err != nil || len(list) != 2 || list[0].ID != "t1" || list[1].ID != "t2" {
		t.Fatalf("list: %v, %v; want t1, t2", list, err)
	}
}

func testSensorHealth(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustCluster(t, s, ref)
	h1 := store.SensorHealth{Cluster: ref, Node: "node-b", SourceMode: "ebpf", Drops: 1, RuleSetVersion: "r1", SensorVersion: "0.1", ReportedAt: at(0)}
	if err := s.PutSensorHealth(ctx, h1); err != nil {
		t.Fatalf("put: %v", err)
	}
	h1.SourceMode, h1.Drops, h1.OutboxDropped, h1.Missing, h1.ReportedAt = "proc", 1<<63+5, 7, []string{"network events"}, at(time.Minute)
	if err := s.PutSensorHealth(ctx, h1); err != nil {
		t.Fatalf("put again: %v", err)
	}
	h2 := store.SensorHealth{Cluster: ref, Node: "node-a", SourceMode: "ebpf", ReportedAt: at(0)}
	if err := s.PutSensorHealth(ctx, h2); err != nil {
		t.Fatalf("put: %v", err)
	}
	// The audit collector on node-b reports beside its sensor.
	h3 := store.SensorHealth{Cluster: ref, Node: "node-b", Component: store.ComponentAudit, SourceMode: "audit-webhook", Drops: 3, ReportedAt: at(time.Minute)}
	if err := s.PutSensorHealth(ctx, h3); err != nil {
		t.Fatalf("put audit: %v", err)
	}
	if err := s.PutSensorHealth(ctx, store.SensorHealth{Cluster: ref, Node: "node-b", Component: "webhook", ReportedAt: at(0)}); err == nil {
		t.Error("an unknown component was stored")
	}
	list, err := s.ListSensorHealth(ctx, ref)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	h1.Component, h2.Component = store.ComponentSensor, store.ComponentSensor
	wantEqual(t, "health per node and component", list, []store.SensorHealth{h2, h3, h1})
}

func testOutputs(t *testing.T, s store.Store) {
	ctx := t.Context()
	in := store.Output{Name: "siem", Type: "webhook", MinSeverity: alert.SeverityMedium, Config: map[string]string{"url": "https://127.0.0.1:9/x", "format": "json"}, Enabled: true, CreatedAt: at(0)}
	got, err := s.PutOutput(ctx, in)
	if err != nil {
		t.Fatalf("put: %v", err)
	}
	wantEqual(t, "put output", got, in)
	upd := in
	upd.Enabled, upd.Type, upd.CreatedAt = false, "syslog", at(time.Hour)
	got, err = s.PutOutput(ctx, upd)
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	upd.CreatedAt = in.CreatedAt
	wantEqual(t, "updated output (createdAt kept)", got, upd)
	if _, err := s.PutOutput(ctx, store.Output{Name: "audit", Type: "syslog", Enabled: true}); err != nil {
		t.Fatalf("put: %v", err)
	}
	list, err := s.ListOutputs(ctx)
	if err != nil || len(list) != 2 || list[0].Name != "audit" || list[1].Name != "siem" {
		t.Fatalf("list: %v, %v", list, err)
	}
	if err := s.DeleteOutput(ctx, "siem"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	wantErr(t, "delete the deleted output", s.DeleteOutput(ctx, "siem"), store.ErrNotFound)
	if list, _ := s.ListOutputs(ctx); len(list) != 1 {
		t.Fatalf("after delete: %v", list)
	}
}

func testSettings(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.GetSetting(ctx, "bootstrap")
	wantErr(t, "get a missing setting", err, store.ErrNotFound)
	for _, v := range []string{"done", "", "again"} {
		if err := s.PutSetting(ctx, "bootstrap", v); err != nil {
			t.Fatalf("put: %v", err)
		}
		if got, err := s.GetSetting(ctx, "bootstrap"); err != nil || got != v {
			t.Fatalf("get: %q, %v; want %q", got, err, v)
		}
	}
}

func testRunExclusive(t *testing.T, s store.Store) {
	ctx := t.Context()
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		ran, err := s.RunExclusive(ctx, "sweep", func(context.Context) error {
			close(started)
			<-release
			return nil
		})
		if err == nil && !ran {
			err = errors.New("the first job did not run")
		}
		done <- err
	}()
	<-started
	var calls atomic.Int32
	ran, err := s.RunExclusive(ctx, "sweep", func(context.Context) error { calls.Add(1); return nil })
	if err != nil || ran || calls.Load() != 0 {
		t.Fatalf("second job of the same name while the first runs: ran %v, err %v, calls %d; want not run", ran, err, calls.Load())
	}
	ran, err = s.RunExclusive(ctx, "other", func(context.Context) error { calls.Add(1); return nil })
	if err != nil || !ran || calls.Load() != 1 {
		t.Fatalf("a job of another name: ran %v, err %v; want it run", ran, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("first job: %v", err)
	}
	boom := errors.New("boom")
	ran, err = s.RunExclusive(ctx, "sweep", func(context.Context) error { return boom })
	if !ran || !errors.Is(err, boom) {
		t.Fatalf("after the first job ended: ran %v, err %v; want run and its error", ran, err)
	}
	ran, err = s.RunExclusive(ctx, "sweep", func(context.Context) error { return nil })
	if !ran || err != nil {
		t.Fatalf("after a failed job: ran %v, err %v; want run", ran, err)
	}
}

// OpenConcurrently opens (and closes) n stores at once, as replicas
// starting together would, and fails t unless all succeed. Then it opens
// one more and checks it reports the newest schema version.
func OpenConcurrently(t *testing.T, n, newestVersion int, open func(ctx context.Context) (store.Store, error)) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range errs {
		wg.Go(func() {
			s, err := open(t.Context())
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("opening %d stores at once: %v", n, err)
	}
	s, err := open(t.Context())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	v, ok := s.(interface {
		SchemaVersion(context.Context) (int, error)
	})
	if !ok {
		t.Fatalf("%T has no SchemaVersion method", s)
	}
	got, err := v.SchemaVersion(t.Context())
	if err != nil || got != newestVersion {
		t.Fatalf("schema version %d, %v; want %d", got, err, newestVersion)
	}
}

// Opened fails t when opening s failed, and closes s when t ends.
func Opened[S store.Store](t testing.TB, s S, err error) S {
	t.Helper()
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}
