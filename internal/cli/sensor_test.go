package cli

import (
	"io"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/vigil-sec/vigil/internal/sensorcmd"
)

// `vigil sensor` and the vigil-sensor binary the DaemonSet runs are the
// same command: every flag (the global --log-level and --log-format
// included) has the same name, default and help in both.
func TestVigilSensorAndTheLeanBinaryTakeTheSameFlags(t *testing.T) {
	describe := func(sets ...*pflag.FlagSet) []string {
		var out []string
		for _, fs := range sets {
			fs.VisitAll(func(f *pflag.Flag) {
				if f.Name != "help" {
					out = append(out, strings.Join([]string{f.Name, f.Shorthand, f.DefValue, f.Usage}, " | "))
				}
			})
		}
		sort.Strings(out)
		return out
	}
	root := newRoot(io.Discard, io.Discard)
	sub, _, err := root.Find([]string{"sensor"})
	if err != nil {
		t.Fatal(err)
	}
	vigil := describe(sub.LocalFlags(), sub.InheritedFlags())
	lean := sensorcmd.Root("dev", io.Discard, io.Discard)
	alone := describe(lean.LocalFlags(), lean.InheritedFlags())
	if strings.Join(vigil, "\n") != strings.Join(alone, "\n") {
		t.Fatalf("vigil sensor flags:\n%s\n\nvigil-sensor flags:\n%s", strings.Join(vigil, "\n"), strings.Join(alone, "\n"))
	}
	if len(vigil) < 30 {
		t.Fatalf("only %d flags found: %v", len(vigil), vigil)
	}
}
