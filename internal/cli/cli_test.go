package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int
		ok   bool
	}{
		{"4MiB", 4 << 20, true},
		{"4m", 4 << 20, true},
		{"512KiB", 512 << 10, true},
		{"4096", 4096, true},
		{"1G", 1 << 30, true},
		{"four megs", 0, false},
		{"-1", 0, false},
	}
	for _, c := range cases {
		got, err := parseSize(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", c.in, got, err, c.want, c.ok)
		}
	}
}

// Bad flags must be refused before anything touches the kernel, with a
// message that says what to pass instead.
func TestSensorRejectsBadFlagsWithAdvice(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no destination is an error that names both flags", []string{"sensor"}, "--events-out"},
		{"a ring size that is not a power of two is refused", []string{"sensor", "--events-out", "-", "--ring-size", "3MiB"}, "power of two"},
		{"a ring size that is not a size is refused", []string{"sensor", "--events-out", "-", "--ring-size", "big"}, "not a size"},
		{"an unknown source is refused", []string{"sensor", "--events-out", "-", "--source", "kprobe"}, "use auto, ebpf or proc"},
		{"a tiny argv cap is refused", []string{"sensor", "--events-out", "-", "--argv-max", "3"}, "between 64 and 4096"},
		{"an unknown log level is refused", []string{"--log-level", "loud", "sensor", "--events-out", "-"}, "--log-level"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(c.args, &out, &errb)
			if code == 0 {
				t.Fatalf("exit code 0, want failure; stderr=%q", errb.String())
			}
			if !strings.Contains(errb.String(), c.want) {
				t.Fatalf("stderr %q does not mention %q", errb.String(), c.want)
			}
		})
	}
}

func TestVersionPrintsTheVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"version"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.HasPrefix(out.String(), "vigil ") {
		t.Fatalf("got %q", out.String())
	}
}
