package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFeed(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "feed.txt")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The flag is wired into the sensor: a bad feed stops the start (before
// anything attaches) with the file, the line and what to write instead.
func TestTheSensorRefusesToStartWithABadThreatIntelFeed(t *testing.T) {
	feed := writeFeed(t, "evil.example\n203.0.113.0/99\n")
	var out, errb strings.Builder
	code := Main([]string{"sensor", "--alerts-out", filepath.Join(t.TempDir(), "alerts.jsonl"), "--threat-intel", feed}, &out, &errb)
	if code == 0 || !strings.Contains(errb.String(), feed+":2") || !strings.Contains(errb.String(), "not a CIDR") {
		t.Fatalf("vigil sensor with a bad feed: exit %d, stderr %q; want a failure naming %s:2", code, errb.String(), feed)
	}
}

func TestSimulateRejectsBadUsageBeforeDoingAnything(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"simulate", "all"}, "--local"},
		{[]string{"simulate", "mining", "--local"}, `unknown scenario "mining"`},
		{[]string{"simulate", "all", "--local", "--wait", "0s"}, "--wait"},
	}
	for _, c := range cases {
		var out, errb strings.Builder
		code := Main(c.args, &out, &errb)
		if code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("vigil %s: exit %d, stderr %q; want exit 2 mentioning %q", strings.Join(c.args, " "), code, errb.String(), c.want)
		}
	}
}
