package detect

import (
	"os"
	"path/filepath"
	"testing"
)

// Rule files are user input: whatever a file holds, loading and compiling
// it returns rules or an error that names the problem, never a panic.
func FuzzRuleFile(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("..", "..", "rules", "*.yaml"))
	for _, p := range paths {
		if data, err := os.ReadFile(p); err == nil && len(data) < 64<<10 {
			f.Add(data)
		}
	}
	f.Add([]byte("- rule: x/Y\n  name: y\n  severity: High\n  events: [exec]\n  condition: proc.name == 'sh'\n"))
	f.Add([]byte("- list: l\n  items: [a, b]\n- macro: m\n  condition: proc.name in l\n"))
	f.Add([]byte("- rule: [\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		rs := NewRuleSet()
		if err := rs.add("fuzz.yaml", data); err != nil {
			if err.Error() == "" {
				t.Fatal("an error without a message")
			}
			return
		}
		if _, err := Compile(rs); err != nil && err.Error() == "" {
			t.Fatal("a compile error without a message")
		}
	})
}
