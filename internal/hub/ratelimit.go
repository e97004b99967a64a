package hub

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// clusterLimiter limits the ingest requests of each cluster (token bucket
// per cluster), so one cluster's runaway sensors cannot starve the others.
type clusterLimiter struct {
	every rate.Limit
	burst int

	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func newClusterLimiter(perSecond float64, burst int) *clusterLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &clusterLimiter{every: rate.Limit(perSecond), burst: max(burst, 1), m: map[string]*rate.Limiter{}}
}

// allow takes one request of cluster; when refused it says how long to wait.
func (l *clusterLimiter) allow(cluster string, now time.Time) (bool, time.Duration) {
	if l == nil {
		return true, 0
	}
	l.mu.Lock()
	lim, ok := l.m[cluster]
	if !ok {
		lim = rate.NewLimiter(l.every, l.burst)
		l.m[cluster] = lim
	}
	l.mu.Unlock()
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// tooMany is the 429 a rate-limited sensor gets: it retries after the
// delay (internal/ship honours Retry-After) and loses nothing.
func tooMany(w http.ResponseWriter, cluster string, wait time.Duration) *apiError {
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	return apiErr(http.StatusTooManyRequests, "TooManyRequests",
		"cluster %s sends more than its ingest rate allows; retry after %d s (raise the hub's --ingest-rate if this cluster is legitimately this busy)", cluster, max(secs, 1))
}
