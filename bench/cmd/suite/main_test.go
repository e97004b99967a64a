package main

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/bench/suite"
	"github.com/vigil-sec/vigil/internal/testenv"
)

func TestOptionsDefaultToTheIssuesSizesAndQuickShrinksThem(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		shortLived uint64
		count      int
		containers int
	}{
		{"a full run makes a million short-lived processes", nil, 1_000_000, 5, 50},
		{"-quick makes 100,000 and repeats less", []string{"-quick"}, 100_000, 3, 50},
		{"flags override the defaults", []string{"-quick", "-short-lived", "5000", "-count", "1", "-containers", "7"}, 5000, 1, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseOptions(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if o.shortLived != tc.shortLived || o.count != tc.count || o.containers != tc.containers {
				t.Fatalf("got short-lived %d, count %d, containers %d; want %d, %d, %d",
					o.shortLived, o.count, o.containers, tc.shortLived, tc.count, tc.containers)
			}
		})
	}
}

func TestBadOptionsSayWhatIsWrong(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"an unknown item", []string{"-only", "P4,P9"}, "P9 is not an item"},
		{"no containers", []string{"-containers", "-1"}, "-containers -1: must be at least 1"},
		{"a stray argument", []string{"P4"}, "takes only flags"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseOptions(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestOnlyRunsTheNamedItems(t *testing.T) {
	o, err := parseOptions([]string{"-only", "p4, P7"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range items {
		if got, want := o.runs(it), it == "P4" || it == "P7"; got != want {
			t.Errorf("runs(%s) = %v, want %v", it, got, want)
		}
	}
}

// The whole suite end to end, shrunk to one or two minutes (2 side-by-side rounds: the noise floor needs two): every P item
// must end up in the one table, measured (met or not), none FAILED.
func TestTheQuickSuitePrintsARowForEveryPItem(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireBinary(t, "runc")
	_, err := os.Stat("/bin/busybox")
	testenv.Require(t, err == nil, "/bin/busybox not found (apt-get install busybox-static)")

	var out bytes.Buffer
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rep, err := run(t.Context(), log, []string{"-quick", "-pairs", "2", "-count", "1", "-benchtime", "100ms",
		"-containers", "5", "-overflows", "1", "-overflow-storm", "500ms", "-live", "1000", "-short-lived", "5000",
		"-checkpoints", "2", "-results", ""}, &out)
	if err != nil {
		t.Fatalf("the suite failed: %v\n%s", err, out.String())
	}
	table := out.String()
	for _, it := range items {
		if !slices.ContainsFunc(rep.Rows, func(r suite.Row) bool { return r.Item == it }) {
			t.Errorf("no row for %s in\n%s", it, table)
		}
		if !strings.Contains(table, "| "+it+" ") {
			t.Errorf("the printed table has no %s row:\n%s", it, table)
		}
	}
	for _, r := range rep.Rows {
		if strings.HasPrefix(r.Measured, "FAILED") || r.Measured == "not measured" {
			t.Errorf("%s %q was not measured: %s", r.Item, r.What, r.Measured)
		}
		if r.Met != suite.MetYes && r.Met != suite.MetNo && r.Met != suite.MetInfo {
			t.Errorf("%s %q: met? is %q, want yes, NO or —", r.Item, r.What, r.Met)
		}
	}
}
