package sensorcmd

import (
	"bytes"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"testing"
)

// vigil-sensor refuses bad command lines before anything touches the
// kernel, says what to pass instead, and tells a usage mistake (exit 2)
// from a bad value (exit 1) like vigil does.
func TestVigilSensorRefusesBadCommandLinesWithAdvice(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"an unknown flag is a usage mistake", []string{"--event-out", "-"}, 2, "see `vigil-sensor --help`"},
		{"an argument is a usage mistake", []string{"sensor", "--events-out", "-"}, 2, `unexpected argument "sensor"`},
		{"no destination names the flags to pass", nil, 1, "--events-out"},
		{"a ring size that is not a power of two is refused", []string{"--events-out", "-", "--ring-size", "3MiB"}, 1, "power of two"},
		{"a negative repeat window is refused", []string{"--events-out", "-", "--network-repeat-window", "-1s"}, 1, "must be 0 (report every connection) or between 1ms and 1h"},
		{"a repeat window over an hour is refused", []string{"--events-out", "-", "--network-repeat-window", "2h"}, 1, "between 1ms and 1h"},
		{"an unknown source is refused", []string{"--events-out", "-", "--source", "kprobe"}, 1, "use auto, ebpf or proc"},
		{"an unknown log level is refused", []string{"--log-level", "loud", "--events-out", "-"}, 1, "--log-level"},
		{"an unknown metadata mode is refused", []string{"--events-out", "-", "--kube-metadata", "maybe"}, 1, "use auto, on or off"},
		{"a hub without a token says where to put it", []string{"--hub-url", "https://127.0.0.1:1", "--cluster-id", "/x"}, 1, "--hub-token-file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("VIGIL_HUB_TOKEN", "")
			t.Setenv("KUBERNETES_SERVICE_HOST", "")
			var out, errb bytes.Buffer
			code := Main("test", c.args, &out, &errb)
			if code != c.code || !strings.Contains(errb.String(), c.want) {
				t.Fatalf("exit %d, stderr %q; want exit %d mentioning %q", code, errb.String(), c.code, c.want)
			}
		})
	}
}

func TestVigilSensorVersionPrintsTheVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main("1.2.3", []string{"version"}, &out, &errb); code != 0 || out.String() != "vigil-sensor 1.2.3\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

// The sensor keeps its heap tight (GOGC 50) unless the operator chose a
// GOGC of their own.
func TestTheSensorTightensTheGarbageCollectorUnlessGOGCIsSet(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	t.Setenv("GOGC", "200")
	tuneGC(log)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC=200 set the sensor changed the GC percent to %d", got)
	}
	t.Setenv("GOGC", "")
	tuneGC(log)
	if got := debug.SetGCPercent(100); got != sensorGCPercent {
		t.Errorf("without GOGC the GC percent is %d, want %d", got, sensorGCPercent)
	}
}
