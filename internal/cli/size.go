package cli

import (
	"fmt"
	"strconv"
	"strings"
)

// parseSize accepts a byte count with an optional binary suffix
// (K/KiB, M/MiB, G/GiB): "4MiB", "512k", "4194304".
func parseSize(s string) (int, error) {
	t := strings.TrimSpace(strings.ToLower(s))
	mult := 1
	for _, suf := range []struct {
		s string
		m int
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(t, suf.s) {
			t, mult = strings.TrimSuffix(t, suf.s), suf.m
			break
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(t))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size: use bytes or a K/M/G (KiB/MiB/GiB) suffix, e.g. 4MiB", s)
	}
	return n * mult, nil
}
