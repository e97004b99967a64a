package sidebyside

import (
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	for _, tc := range []struct {
		name string
		stat string
		want time.Duration
	}{
		{"utime and stime are added up in USER_HZ ticks",
			"4242 (vigil) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 50 0 0 20 0 9 0 100 2000000 3000 18446744073709551615",
			2 * time.Second},
		{"a command name with spaces and parentheses does not shift the fields",
			"7 (a) b (c) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 1 1 1",
			70 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tc.stat))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("a truncated stat line is an error, not zero CPU", func(t *testing.T) {
		if _, err := parseStatCPU([]byte("1 (x) S 1 2 3")); err == nil {
			t.Fatal("want an error")
		}
	})
}

func TestParseStatusReadsRSSAndPeak(t *testing.T) {
	m, err := parseStatus([]byte("Name:\tvigil\nVmHWM:\t   40960 kB\nVmRSS:\t   30720 kB\nThreads:\t9\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.RSSKiB != 30720 || m.PeakKiB != 40960 {
		t.Fatalf("got %+v, want RSS 30720 KiB and peak 40960 KiB", m)
	}
	if _, err := parseStatus([]byte("Name:\tkthreadd\n")); err == nil {
		t.Fatal("a status without VmRSS (a kernel thread) must be an error")
	}
}

func TestParseMetricsFindsTheSensorSeries(t *testing.T) {
	text := `# HELP vigil_sensor_drops_total Records lost.
# TYPE vigil_sensor_drops_total counter
vigil_sensor_drops_total 3
vigil_sensor_events_total{kind="exec"} 1.5e+06
vigil_sensor_events_total{kind="open"} 12
vigil_sensor_source_info{mode="ebpf"} 1
vigil_sensor_process_table_size 211 1700000000000
`
	s, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]float64{MetricDrops: 3, MetricExecEvents: 1.5e6, MetricEBPF: 1, MetricProcessTable: 211} {
		if s[k] != want {
			t.Errorf("%s = %v, want %v", k, s[k], want)
		}
	}
	if _, err := ParseMetrics(strings.NewReader("vigil_sensor_drops_total lots\n")); err == nil {
		t.Error("a non-numeric value must be an error")
	}
}

func TestSummarizeGivesMedianAndRange(t *testing.T) {
	for _, tc := range []struct {
		name string
		xs   []float64
		want Summary
	}{
		{"odd count takes the middle value", []float64{0.9, 1.1, 0.95}, Summary{0.95, 0.9, 1.1, 3}},
		{"even count averages the two middle values", []float64{4, 1, 3, 2}, Summary{2.5, 1, 4, 4}},
		{"no values is an empty Summary", nil, Summary{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Summarize(tc.xs); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestReportPairsEachRoundWithItsOwnBaseline(t *testing.T) {
	res := &Results{Configs: SensorConfigs()[:2], Options: map[string]any{"pairs": 2}}
	add := func(round int, mode string, rate, drops, cpu float64) {
		s := Sample{Round: round, Mode: mode, Workload: "exec", Storm: StormResult{Ops: 1000, Rate: rate, CPU: 1000 / rate}}
		if mode != modeOff {
			s.Sensor = &SensorDelta{Drops: drops, CPUPercent: cpu, ExecEvents: 1000}
		}
		res.Samples = append(res.Samples, s)
	}
	// Round 0 is a fast machine, round 1 a slow one: pairing per round gives
	// 0.98 and 0.96, pooling all rates would not.
	add(0, modeOff, 2000, 0, 0)
	add(0, "default", 1960, 0, 3)
	add(0, "nofile", 2000, 0, 2)
	add(1, modeOff, 1000, 0, 0)
	add(1, "default", 960, 2, 7)
	add(1, "nofile", 1000, 0, 2)
	rep := buildReport(res, []string{"exec"})

	row := rep.ratioRows[0]
	if row[3] != "0.970 [0.960–0.980]" || row[5] != "yes" {
		t.Errorf("default exec row = %q, want ratio 0.970 [0.960–0.980] meeting ≥ 0.97", row)
	}
	if row := rep.ratioRows[1]; row[3] != "1.000 [1.000–1.000]" {
		t.Errorf("nofile exec row = %q, want ratio 1.000", row)
	}
	drops := rep.sensor[0]
	if drops[1] != "2 (2)" || drops[2] != "0 (0)" || drops[4] != "NO" {
		t.Errorf("drops row = %q, want default 2 (2), nofile 0 (0), goal not met", drops)
	}
	cpu := rep.sensor[1]
	if cpu[1] != "5.0 [3.0–7.0]" || cpu[4] != "yes" {
		t.Errorf("CPU row = %q, want default 5.0 [3.0–7.0] meeting ≤ 5 %%", cpu)
	}
	if err := rep.write(io.Discard); err != nil {
		t.Fatal(err)
	}
}
