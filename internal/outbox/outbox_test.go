package outbox

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/alert"
)

func testAlert(i int) alert.Alert {
	return alert.Alert{
		ID: fmt.Sprintf("alert-%06d", i), AlertType: "vigil.node/TestAlert", DisplayName: "Test alert",
		Description: "a test alert <with> & characters", Severity: alert.SeverityHigh, Status: alert.StatusActive,
		StartTime: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), EndTime: time.Date(2026, 11, 25, 12, 0, 1, 0, time.UTC),
		Count: 1, Tactics: []string{"Execution"},
		Entities: alert.Entities{Node: "node-1", Namespace: "default", Pod: "web-0",
			Process: &alert.Process{Path: "/bin/sh", CommandLine: "sh -c 'echo VIGIL-TEST-ALERT-7f3b'", PID: 4242}},
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func open(t testing.TB, dir string, opts Options) *Outbox {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quiet
	}
	ob, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("open outbox: %v", err)
	}
	t.Cleanup(func() { ob.Close() })
	return ob
}

func appendN(t testing.TB, ob *Outbox, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		if err := ob.Append(testAlert(i)); err != nil {
			t.Fatalf("append alert %d: %v", i, err)
		}
	}
}

// ids peeks everything and returns the alert IDs in order.
func ids(t testing.TB, ob *Outbox) []string {
	t.Helper()
	recs, err := ob.Peek(1 << 30)
	if err != nil {
		t.Fatalf("peek: %v", err)
	}
	var out []string
	for _, r := range recs {
		a, err := r.Alert()
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		out = append(out, a.ID)
	}
	return out
}

func idRange(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, testAlert(i).ID)
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func segments(t testing.TB, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(m)
	return m
}

func TestAlertsArePeekedOldestFirstAndReturnUnchangedAfterReopen(t *testing.T) {
	dir := t.TempDir()
	ob := open(t, dir, Options{})
	appendN(t, ob, 0, 50)
	if got := ids(t, ob); !equal(got, idRange(0, 50)) {
		t.Fatalf("peek before reopen = %v", got)
	}
	recs, _ := ob.Peek(1)
	a, _ := recs[0].Alert()
	want := testAlert(0)
	if a.Description != want.Description || !a.StartTime.Equal(want.StartTime) || a.Entities.Process.CommandLine != want.Entities.Process.CommandLine {
		t.Fatalf("alert changed in the outbox: %+v", a)
	}
	if err := ob.Close(); err != nil {
		t.Fatal(err)
	}
	ob2 := open(t, dir, Options{})
	if got := ids(t, ob2); !equal(got, idRange(0, 50)) {
		t.Fatalf("peek after reopen = %v", got)
	}
	if st := ob2.Stats(); st.Records != 50 || st.NextSeq != 50 {
		t.Fatalf("stats after reopen = %+v, want 50 records, next seq 50", st)
	}
}

func TestAckedRecordsAreNotDeliveredAgainButUnackedOnesAreAfterRestart(t *testing.T) {
	dir := t.TempDir()
	ob := open(t, dir, Options{})
	appendN(t, ob, 0, 30)
	recs, err := ob.Peek(10)
	if err != nil || len(recs) != 10 {
		t.Fatalf("peek 10 = %d records, %v", len(recs), err)
	}
	if err := ob.Ack(recs[9].Seq); err != nil {
		t.Fatal(err)
	}
	// Peeked but never acknowledged: must come back.
	if _, err := ob.Peek(5); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, ob); !equal(got, idRange(10, 30)) {
		t.Fatalf("after ack = %v", got)
	}
	ob.Close()

	ob2 := open(t, dir, Options{})
	if got := ids(t, ob2); !equal(got, idRange(10, 30)) {
		t.Fatalf("after restart = %v, want alerts 10..29", got)
	}
	appendN(t, ob2, 30, 5)
	recs, _ = ob2.Peek(100)
	if err := ob2.Ack(recs[len(recs)-1].Seq); err != nil {
		t.Fatal(err)
	}
	if st := ob2.Stats(); st.Records != 0 || st.Bytes != 0 {
		t.Fatalf("everything acknowledged but stats = %+v", st)
	}
	ob2.Close()
	ob3 := open(t, dir, Options{})
	if got := ids(t, ob3); len(got) != 0 {
		t.Fatalf("after acknowledging everything and restarting, %d records came back", len(got))
	}
	appendN(t, ob3, 35, 1)
	if got := ids(t, ob3); !equal(got, idRange(35, 36)) {
		t.Fatalf("append after restart = %v", got)
	}
}

func TestAckingRecordsThatWereNotPeekedWorks(t *testing.T) {
	ob := open(t, t.TempDir(), Options{SegmentBytes: 4096, MaxBytes: 1 << 20})
	appendN(t, ob, 0, 40)
	if err := ob.Ack(24); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, ob); !equal(got, idRange(25, 40)) {
		t.Fatalf("after Ack(24) = %v", got)
	}
	if err := ob.Ack(10); err != nil {
		t.Fatalf("acknowledging again: %v", err)
	}
	if err := ob.Ack(40); err == nil {
		t.Fatal("acknowledging a record never appended succeeded")
	}
}

func TestAckDeletesSegmentsThatHoldOnlyAcknowledgedRecords(t *testing.T) {
	dir := t.TempDir()
	ob := open(t, dir, Options{SegmentBytes: 4096, MaxBytes: 1 << 20})
	appendN(t, ob, 0, 100)
	before := len(segments(t, dir))
	if before < 5 {
		t.Fatalf("expected many 4 KiB segments, got %d", before)
	}
	recs, _ := ob.Peek(60)
	if err := ob.Ack(recs[59].Seq); err != nil {
		t.Fatal(err)
	}
	after := len(segments(t, dir))
	if after >= before-2 {
		t.Fatalf("segments before ack %d, after acking 60%% of the records %d: acknowledged segments were not deleted", before, after)
	}
	if got := ids(t, ob); !equal(got, idRange(60, 100)) {
		t.Fatalf("after ack = %v", got)
	}
}

func TestPeekBytesStopsAtTheByteLimitButReturnsAtLeastOneRecord(t *testing.T) {
	ob := open(t, t.TempDir(), Options{})
	appendN(t, ob, 0, 10)
	one, _ := ob.Peek(1)
	size := len(one[0].Data)
	recs, err := ob.PeekBytes(10, 3*size+size/2)
	if err != nil || len(recs) != 3 {
		t.Fatalf("PeekBytes(3.5 records) = %d records, %v; want 3", len(recs), err)
	}
	recs, _ = ob.PeekBytes(10, 1)
	if len(recs) != 1 {
		t.Fatalf("PeekBytes(1 byte) = %d records, want 1", len(recs))
	}
}

// writeRaw appends raw bytes to the last segment of dir.
func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	segs := segments(t, dir)
	if len(segs) == 0 {
		t.Fatal("no segments")
	}
	return segs[len(segs)-1]
}

func TestATornLastRecordIsCutOffAndNothingBeforeItIsLost(t *testing.T) {
	cases := []struct {
		name string
		tear func(t *testing.T, path string, lastStart, size int64)
	}{
		{"header half written", func(t *testing.T, path string, lastStart, size int64) {
			truncate(t, path, lastStart+3)
		}},
		{"payload half written", func(t *testing.T, path string, lastStart, size int64) {
			truncate(t, path, lastStart+(size-lastStart)/2)
		}},
		{"payload never reached the disk (zeros)", func(t *testing.T, path string, lastStart, size int64) {
			zero := make([]byte, size-lastStart-headerSize)
			writeAt(t, path, lastStart+headerSize, zero)
		}},
		{"size extended but nothing written (zero tail)", func(t *testing.T, path string, lastStart, size int64) {
			writeAt(t, path, lastStart, make([]byte, size-lastStart))
			writeAt(t, path, size, make([]byte, 4096))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ob := open(t, dir, Options{})
			appendN(t, ob, 0, 20)
			recs, _ := ob.Peek(100)
			ob.Close()
			path := lastSegment(t, dir)
			fi, _ := os.Stat(path)
			lastStart := fi.Size() - int64(len(recs[19].Data)) - headerSize
			tc.tear(t, path, lastStart, fi.Size())

			reg := prometheus.NewRegistry()
			ob2 := open(t, dir, Options{Registerer: reg})
			if n := metricValue(t, reg, "vigil_outbox_torn_records_truncated_total"); n != 1 {
				t.Errorf("vigil_outbox_torn_records_truncated_total = %v, want 1", n)
			}
			if got := ids(t, ob2); !equal(got, idRange(0, 19)) {
				t.Fatalf("after the tear: %v, want alerts 0..18", got)
			}
			if fi, _ := os.Stat(path); fi.Size() != lastStart {
				t.Fatalf("segment is %d bytes after recovery, want it cut at %d", fi.Size(), lastStart)
			}
			appendN(t, ob2, 100, 1)
			ob2.Close()
			ob3 := open(t, dir, Options{})
			if got := ids(t, ob3); !equal(got, append(idRange(0, 19), testAlert(100).ID)) {
				t.Fatalf("append after recovery, reopened: %v", got)
			}
		})
	}
}

func TestCorruptionBeforeTheTailIsReportedWithFileAndOffset(t *testing.T) {
	dir := t.TempDir()
	ob := open(t, dir, Options{})
	appendN(t, ob, 0, 10)
	recs, _ := ob.Peek(100)
	ob.Close()
	path := lastSegment(t, dir)
	var off int64
	for _, r := range recs[:4] {
		off += headerSize + int64(len(r.Data))
	}
	flipByte(t, path, off+headerSize+5) // inside record 4's payload

	_, err := Open(dir, Options{})
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("open of a corrupt outbox: %v, want a *CorruptError", err)
	}
	msg := err.Error()
	for _, want := range []string{path, fmt.Sprintf("offset %d", off), "CRC", "truncate -s", "repair"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if ce.Offset != off || ce.File != path {
		t.Fatalf("CorruptError at %s:%d, want %s:%d", ce.File, ce.Offset, path, off)
	}

	// Repair keeps the records before the bad one and saves the rest.
	ob2 := open(t, dir, Options{Repair: true})
	if got := ids(t, ob2); !equal(got, idRange(0, 4)) {
		t.Fatalf("after repair: %v, want alerts 0..3", got)
	}
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Fatalf("the cut bytes were not saved: %v", err)
	}
}

func TestCorruptionFoundWhilePeekingNamesFileAndOffset(t *testing.T) {
	dir := t.TempDir()
	ob := open(t, dir, Options{})
	appendN(t, ob, 0, 3)
	recs, _ := ob.Peek(1)
	flipByte(t, lastSegment(t, dir), int64(headerSize+len(recs[0].Data)+headerSize+1))
	_, err := ob.Peek(10)
	var ce *CorruptError
	if !errors.As(err, &ce) || ce.Offset != int64(headerSize+len(recs[0].Data)) {
		t.Fatalf("peek over a corrupt record: %v", err)
	}
}

func TestAFullOutboxDropsTheOldestSegmentAndCountsEveryDroppedAlert(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	const seg, maxB = 8192, 32768
	ob := open(t, dir, Options{SegmentBytes: seg, MaxBytes: maxB, Registerer: reg})
	recSize := int64(0)
	appendN(t, ob, 0, 1)
	recSize = ob.Stats().DiskBytes
	perSeg := int(seg / recSize)
	// Acknowledge the first 3 so that dropped counts only unacknowledged ones.
	appendN(t, ob, 1, 2)
	if err := ob.Ack(2); err != nil {
		t.Fatal(err)
	}
	total := 400
	appendN(t, ob, 3, total-3)

	st := ob.Stats()
	if st.DiskBytes > maxB {
		t.Fatalf("outbox holds %d bytes, more than its limit %d", st.DiskBytes, maxB)
	}
	got := ids(t, ob)
	if len(got) == 0 || got[len(got)-1] != testAlert(total-1).ID {
		t.Fatalf("the newest alert is not kept: %v", got)
	}
	first := 0
	fmt.Sscanf(got[0], "alert-%d", &first)
	if !equal(got, idRange(first, total)) {
		t.Fatalf("kept records are not a contiguous newest range: %v", got)
	}
	wantDropped := uint64(first - 3) // everything before the first kept, minus the acknowledged 3
	if st.Dropped != wantDropped || ob.Dropped() != wantDropped {
		t.Fatalf("dropped = %d (Dropped() %d), want %d (kept from %d)", st.Dropped, ob.Dropped(), wantDropped, first)
	}
	if m := metricValue(t, reg, "vigil_outbox_dropped_total"); m != float64(wantDropped) {
		t.Fatalf("vigil_outbox_dropped_total = %v, want %d", m, wantDropped)
	}
	if first%perSeg != 0 {
		t.Fatalf("first kept %d is not at a segment boundary (%d records per segment)", first, perSeg)
	}
	// The drop survives a restart: the dropped records stay gone.
	ob.Close()
	ob2 := open(t, dir, Options{SegmentBytes: seg, MaxBytes: maxB})
	if got2 := ids(t, ob2); !equal(got2, got) {
		t.Fatalf("after restart %d records, before %d", len(got2), len(got))
	}
}

func TestMetricsReportDepthAppendedAndAcked(t *testing.T) {
	reg := prometheus.NewRegistry()
	ob := open(t, t.TempDir(), Options{Registerer: reg})
	appendN(t, ob, 0, 7)
	if err := ob.Ack(2); err != nil {
		t.Fatal(err)
	}
	if err := ob.Sync(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]float64{
		"vigil_outbox_appended_total": 7, "vigil_outbox_acked_total": 3, "vigil_outbox_depth_records": 4,
	} {
		if got := metricValue(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if b := metricValue(t, reg, "vigil_outbox_depth_bytes"); b <= 0 {
		t.Errorf("vigil_outbox_depth_bytes = %v with 4 records queued", b)
	}
	if n := metricValue(t, reg, "vigil_outbox_fsync_seconds"); n < 1 {
		t.Fatalf("fsync histogram observed %v fsyncs after Sync", n)
	}
}

func TestASecondOpenOfTheSameDirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	open(t, dir, Options{})
	_, err := Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Fatalf("second open: %v", err)
	}
}

func TestOptionsThatCannotWorkAreRefusedWithWhatToChange(t *testing.T) {
	_, err := Open(t.TempDir(), Options{SegmentBytes: 1 << 20, MaxBytes: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "at least twice the segment size") {
		t.Fatalf("max = segment size: %v", err)
	}
}

func TestAppendAfterCloseFails(t *testing.T) {
	ob := open(t, t.TempDir(), Options{})
	ob.Close()
	if err := ob.Append(testAlert(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

func TestTheFlusherSyncsWithoutAnExplicitSync(t *testing.T) {
	reg := prometheus.NewRegistry()
	ob := open(t, t.TempDir(), Options{Registerer: reg, FlushInterval: 5 * time.Millisecond})
	appendN(t, ob, 0, 1)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		ob.mu.Lock()
		synced := ob.syncedSeq == ob.nextSeq
		ob.mu.Unlock()
		if synced {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the group commit did not fsync an appended record within 5 s")
}

// metricValue is a counter's or gauge's value, or a histogram's count.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			return m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func truncate(t *testing.T, path string, size int64) {
	t.Helper()
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x5a
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkAppend(b *testing.B) {
	ob, err := Open(b.TempDir(), Options{MaxBytes: 256 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer ob.Close()
	a := testAlert(1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := ob.Append(a); err != nil {
			b.Fatal(err)
		}
	}
}

func TestConcurrentAppendersAndAConsumerAccountForEveryAlert(t *testing.T) {
	cases := []struct {
		name     string
		opts     Options
		overflow bool
	}{
		{"room for everything", Options{SegmentBytes: 16384, MaxBytes: 64 << 20}, false},
		{"overflowing", Options{SegmentBytes: 4096, MaxBytes: 8192}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ob := open(t, t.TempDir(), tc.opts)
			const writers, each = 4, 300
			done := make(chan struct{})
			for w := 0; w < writers; w++ {
				go func(w int) {
					defer func() { done <- struct{}{} }()
					for i := 0; i < each; i++ {
						if err := ob.Append(testAlert(w*each + i)); err != nil {
							t.Errorf("append: %v", err)
							return
						}
					}
				}(w)
			}
			seen := map[string]int{}
			finished := 0
			for finished < writers || ob.Stats().Records > 0 {
				select {
				case <-done:
					finished++
				default:
				}
				recs, err := ob.Peek(7)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range recs {
					a, _ := r.Alert()
					seen[a.ID]++
				}
				if len(recs) > 0 {
					if err := ob.Ack(recs[len(recs)-1].Seq); err != nil {
						t.Fatal(err)
					}
				}
			}
			st := ob.Stats()
			dups := 0
			for _, n := range seen {
				dups += n - 1
			}
			if tc.overflow {
				if st.Dropped == 0 {
					t.Fatal("expected drops with an 8 KiB outbox")
				}
				// A record read just before its segment was dropped is both
				// delivered and counted as dropped; nothing is unaccounted for.
				if uint64(len(seen))+st.Dropped < writers*each {
					t.Fatalf("delivered %d + dropped %d < appended %d", len(seen), st.Dropped, writers*each)
				}
				return
			}
			if len(seen) != writers*each || dups != 0 || st.Dropped != 0 {
				t.Fatalf("delivered %d distinct alerts with %d duplicates and %d dropped, want %d exactly once",
					len(seen), dups, st.Dropped, writers*each)
			}
		})
	}
}

func BenchmarkAppendParallel(b *testing.B) {
	ob, err := Open(b.TempDir(), Options{MaxBytes: 256 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer ob.Close()
	a := testAlert(1)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := ob.Append(a); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func TestCuttingTheSegmentAnywhereKeepsEveryCompleteRecordBeforeTheCut(t *testing.T) {
	src := t.TempDir()
	ob := open(t, src, Options{})
	appendN(t, ob, 0, 12)
	recs, _ := ob.Peek(100)
	ob.Close()
	data, err := os.ReadFile(lastSegment(t, src))
	if err != nil {
		t.Fatal(err)
	}
	// ends[i] is the offset after record i.
	var ends []int
	off := 0
	for _, r := range recs {
		off += headerSize + len(r.Data)
		ends = append(ends, off)
	}
	base := t.TempDir()
	for cut := 0; cut <= len(data); cut++ {
		if cut < ends[9] && cut%11 != 0 {
			continue // every offset of the last records, a sample before
		}
		complete := 0
		for complete < len(ends) && ends[complete] <= cut {
			complete++
		}
		dir := filepath.Join(base, strconv.Itoa(cut))
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, segName(0)), data[:cut], 0o600); err != nil {
			t.Fatal(err)
		}
		ob, err := Open(dir, Options{Logger: quiet})
		if err != nil {
			t.Fatalf("cut at %d: open: %v", cut, err)
		}
		got := ids(t, ob)
		ob.Close()
		if !equal(got, idRange(0, complete)) {
			t.Fatalf("cut at %d: kept %d records, want the %d complete ones", cut, len(got), complete)
		}
	}
}
