package ebpf

import (
	"slices"
	"strings"
	"testing"
)

func TestPrefixTopsAreUsedOnlyWhenEverySensitivePrefixHasAWholeFirstComponent(t *testing.T) {
	for _, tc := range []struct {
		name     string
		prefixes []string
		want     []string
		ok       bool
	}{
		{"the defaults", DefaultSensitivePrefixes, []string{"etc", "var", "run", "root"}, true},
		{"no prefixes", []string{}, nil, true},
		{"a prefix ending inside its first component", []string{"/etc/shadow", "/etc"}, nil, false},
		{"the root", []string{"/"}, nil, false},
		{"a relative prefix", []string{"etc/shadow"}, nil, false},
		{"an empty first component", []string{"//etc/shadow"}, nil, false},
		{"a first component of 31 bytes", []string{"/" + strings.Repeat("a", 31) + "/x"}, []string{strings.Repeat("a", 31)}, true},
		{"a first component longer than the BPF key", []string{"/" + strings.Repeat("a", 32) + "/x"}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := prefixTops(tc.prefixes)
			if ok != tc.ok || !slices.Equal(got, tc.want) {
				t.Errorf("prefixTops(%q) = %q, %v; want %q, %v", tc.prefixes, got, ok, tc.want, tc.ok)
			}
		})
	}
}
