package suite

import (
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/bench/sidebyside"
)

// goBenchOutput is real `go test -bench` output of two packages with
// -count 2, trimmed.
const goBenchOutput = `goos: linux
goarch: amd64
pkg: github.com/vigil-sec/vigil/internal/hub
cpu: AMD EPYC
BenchmarkIngestHTTP/sqlite-2         	      26	  53940020 ns/op	     19965 alerts/s
BenchmarkIngestHTTP/sqlite-2         	      30	  43940020 ns/op	     23011 alerts/s
BenchmarkHeartbeat/clusters=10000-2  	    1737	    983858 ns/op	         2.589 p50-ms	        18.07 p99-ms
PASS
ok  	github.com/vigil-sec/vigil/internal/hub	23.284s
goos: linux
pkg: github.com/vigil-sec/vigil/internal/store/sqlite
BenchmarkIngest-2   	      87	  14012115 ns/op	     35684 alerts/s
PASS
pkg: github.com/vigil-sec/vigil/rules
BenchmarkCatalogOnRecordedEvents/stream         	  771258	      1726 ns/op	    579393 events/s	      26 B/op	       0 allocs/op
--- SKIP: BenchmarkSomething
    latency_test.go:40: must run as root
BenchmarkSomething	--- SKIP
ok  	github.com/vigil-sec/vigil/rules	6.292s
`

func TestParseGoBenchReadsEveryResultLineWithItsPackage(t *testing.T) {
	rs, err := ParseGoBench(strings.NewReader(goBenchOutput))
	if err != nil {
		t.Fatal(err)
	}
	want := []BenchResult{
		{"github.com/vigil-sec/vigil/internal/hub", "BenchmarkIngestHTTP/sqlite", 26, map[string]float64{"ns/op": 53940020, "alerts/s": 19965}},
		{"github.com/vigil-sec/vigil/internal/hub", "BenchmarkIngestHTTP/sqlite", 30, map[string]float64{"ns/op": 43940020, "alerts/s": 23011}},
		{"github.com/vigil-sec/vigil/internal/hub", "BenchmarkHeartbeat/clusters=10000", 1737, map[string]float64{"ns/op": 983858, "p50-ms": 2.589, "p99-ms": 18.07}},
		{"github.com/vigil-sec/vigil/internal/store/sqlite", "BenchmarkIngest", 87, map[string]float64{"ns/op": 14012115, "alerts/s": 35684}},
		{"github.com/vigil-sec/vigil/rules", "BenchmarkCatalogOnRecordedEvents/stream", 771258,
			map[string]float64{"ns/op": 1726, "events/s": 579393, "B/op": 26, "allocs/op": 0}},
	}
	if !reflect.DeepEqual(rs, want) {
		t.Fatalf("got\n%+v\nwant\n%+v", rs, want)
	}
}

func TestParseGoBenchRejectsAResultLineItCannotRead(t *testing.T) {
	for _, tc := range []struct{ name, line string }{
		{"a value that is not a number", "BenchmarkX-2   10   fast ns/op\n"},
		{"a value without its unit", "BenchmarkX-2   10   12 ns/op  7\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseGoBench(strings.NewReader(tc.line)); err == nil {
				t.Fatalf("%q parsed without an error", tc.line)
			}
		})
	}
}

func TestValuesSelectsByPackageNameAndUnit(t *testing.T) {
	rs, err := ParseGoBench(strings.NewReader(goBenchOutput))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, pkg, bench, unit string
		want                   []float64
	}{
		{"every repetition of a benchmark", "/internal/hub", "BenchmarkIngestHTTP/sqlite", "alerts/s", []float64{19965, 23011}},
		{"the same name in another package is not mixed in", "/internal/store/sqlite", "BenchmarkIngest", "alerts/s", []float64{35684}},
		{"a name is matched exactly, not as a prefix", "/internal/hub", "BenchmarkIngestHTTP", "alerts/s", nil},
		{"a unit the benchmark does not report gives nothing", "/internal/hub", "BenchmarkHeartbeat/clusters=10000", "alerts/s", nil},
		{"a zero is a value, not a missing one", "/rules", "BenchmarkCatalogOnRecordedEvents/stream", "allocs/op", []float64{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Values(rs, tc.pkg, tc.bench, tc.unit); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		var out []time.Duration
		for _, x := range xs {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	fifty := make([]int, 50)
	for i := range fifty {
		fifty[i] = 50 - i // 50 … 1, unsorted
	}
	for _, tc := range []struct {
		name string
		xs   []time.Duration
		p    float64
		want time.Duration
	}{
		{"p50 of 50 values is the 25th smallest", ms(fifty...), 0.50, 25 * time.Millisecond},
		{"p99 of 50 values is the largest (rank 49.5 rounds up)", ms(fifty...), 0.99, 50 * time.Millisecond},
		{"p99 of 200 values leaves the two worst out", ms(append(make([]int, 197), 900, 1000, 1100)...), 0.99, 900 * time.Millisecond},
		{"p100 is the maximum", ms(3, 1, 2), 1, 3 * time.Millisecond},
		{"a single value is every percentile", ms(7), 0.5, 7 * time.Millisecond},
		{"no values is zero", nil, 0.99, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.xs, tc.p); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestGoalsJudgeTheValueAgainstTheirBound(t *testing.T) {
	for _, tc := range []struct {
		name string
		g    Goal
		v    float64
		want string
	}{
		{"a ratio at the lower bound meets it", AtLeast("≥ 0.97", 0.97), 0.97, MetYes},
		{"a ratio below the lower bound misses it", AtLeast("≥ 0.97", 0.97), 0.969, MetNo},
		{"a latency at the upper bound meets it", AtMost("≤ 500 ms", 500), 500, MetYes},
		{"a latency above the upper bound misses it", AtMost("≤ 500 ms", 500), 501, MetNo},
		{"one drop misses a goal of zero", AtMost("0", 0), 1, MetNo},
		{"NaN never meets a goal", AtMost("≤ 5 %", 5), math.NaN(), MetNo},
		{"an informational row is not judged", Info(), 123, MetInfo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.g.Judge(tc.v); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSummaryRowJudgesTheMedianAndShowsTheRange(t *testing.T) {
	for _, tc := range []struct {
		name          string
		g             Goal
		s             sidebyside.Summary
		scale         float64
		measured, met string
	}{
		{"the median decides even when the minimum misses", AtLeast("≥ 0.97", 0.97),
			sidebyside.Summarize([]float64{0.95, 0.98, 0.99}), 1, "0.980 [0.950–0.990] (n=3)", MetYes},
		{"values are scaled for printing but judged unscaled", AtLeast("≥ 1.00 M", 1e6),
			sidebyside.Summarize([]float64{1.2e6, 0.9e6}), 1e-6, "1.050 [0.900–1.200] (n=2)", MetYes},
		{"one repetition shows one value", AtMost("≤ 500 ms", 500),
			sidebyside.Summarize([]float64{612}), 1, "612.000 (n=1)", MetNo},
		{"nothing measured never meets a goal", AtMost("≤ 5 %", 5), sidebyside.Summary{}, 1, "not measured", MetNo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := SummaryRow("P1", "x", tc.g, tc.s, "%.3f", tc.scale)
			if r.Measured != tc.measured || r.Met != tc.met || r.Goal != tc.g.Text {
				t.Fatalf("got %+v, want measured %q, met %q", r, tc.measured, tc.met)
			}
		})
	}
}

func TestOverflowRowNeedsEveryStormToOverflowAndBeCountedExactly(t *testing.T) {
	exact := OverflowStorm{Execs: 2000, KernelRecords: 6000, Delivered: 5100, Drops: 900}
	for _, tc := range []struct {
		name   string
		storms []OverflowStorm
		met    string
	}{
		{"every drop counted in every storm", []OverflowStorm{exact, exact}, MetYes},
		{"one record neither delivered nor counted", []OverflowStorm{exact, {KernelRecords: 6000, Delivered: 5100, Drops: 899}}, MetNo},
		{"a storm that never overflowed proves nothing", []OverflowStorm{exact, {KernelRecords: 6000, Delivered: 6000}}, MetNo},
		{"no storm at all", nil, MetNo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := OverflowRow(tc.storms); r.Met != tc.met {
				t.Fatalf("got %+v, want met %q", r, tc.met)
			}
		})
	}
}

func TestRSSRowsJudgeEveryCheckpointAndTheGrowth(t *testing.T) {
	const mib = 1024
	cp := func(k uint64, rss uint64) RSSCheckpoint {
		return RSSCheckpoint{ShortLived: k * 1000, RSSKiB: rss, PeakKiB: rss}
	}
	for _, tc := range []struct {
		name                 string
		r                    RSSResult
		live, after, flatMet string
	}{
		{"small and flat", RSSResult{Live: 10000, WithLive: sidebyside.Memory{RSSKiB: 40 * mib},
			Checkpoints: []RSSCheckpoint{cp(100, 41*mib), cp(200, 42*mib), cp(300, 42*mib)}}, MetYes, MetYes, MetYes},
		{"one checkpoint above 48 MiB fails the memory goal", RSSResult{Live: 10000, WithLive: sidebyside.Memory{RSSKiB: 40 * mib},
			Checkpoints: []RSSCheckpoint{cp(100, 49*mib), cp(200, 47*mib), cp(300, 47*mib)}}, MetYes, MetNo, MetYes},
		{"steady growth in the second half is not flat", RSSResult{Live: 10000, WithLive: sidebyside.Memory{RSSKiB: 30 * mib},
			Checkpoints: []RSSCheckpoint{cp(100, 30*mib), cp(200, 32*mib), cp(300, 36*mib)}}, MetYes, MetYes, MetNo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows := RSSRows(tc.r, "300000")
			if len(rows) != 4 {
				t.Fatalf("got %d rows, want 4: %+v", len(rows), rows)
			}
			if rows[0].Met != tc.live || rows[1].Met != tc.after || rows[2].Met != tc.flatMet {
				t.Fatalf("got verdicts %q %q %q, want %q %q %q: %+v", rows[0].Met, rows[1].Met, rows[2].Met, tc.live, tc.after, tc.flatMet, rows)
			}
		})
	}
}

func TestThousandsGroupsDigits(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 100000: "100,000", 1000000: "1,000,000"} {
		if got := Thousands(n); got != want {
			t.Errorf("Thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
