package suite

import (
	"math"
	"slices"
	"time"
)

// Percentile is the nearest-rank p-quantile (0 < p ≤ 1) of xs: the smallest
// value with at least p of the values at or below it. Empty input is 0.
func Percentile(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	// Ceil, less a hair so 0.5×50 = 25.000000000000004 stays rank 25.
	rank := int(math.Ceil(p*float64(len(s)) - 1e-9))
	return s[min(max(rank, 1), len(s))-1]
}
