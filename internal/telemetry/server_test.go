package telemetry

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthzSaysWhyItIsUnhealthyAndMetricsAreServed(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	var healthy atomic.Bool
	srv, err := Serve("127.0.0.1:0", reg, func() Health {
		if healthy.Load() {
			return Health{OK: true, Status: "ok"}
		}
		return Health{OK: false, Status: "failed", Message: "ring buffer reader stopped"}
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	base := "http://" + srv.Addr()

	if code, body := get(t, base+"/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "ring buffer reader stopped") {
		t.Fatalf("unhealthy /healthz = %d %s", code, body)
	}
	healthy.Store(true)
	if code, body := get(t, base+"/healthz"); code != http.StatusOK || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("healthy /healthz = %d %s", code, body)
	}
	if _, body := get(t, base+"/metrics"); !strings.Contains(body, "vigil_test_total 3") {
		t.Fatalf("/metrics lacks the counter: %s", body)
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("pprof served without WithPprof: %d", code)
	}
}

func TestPprofIsServedOnlyWhenAskedFor(t *testing.T) {
	srv, err := Serve("127.0.0.1:0", prometheus.NewRegistry(), func() Health { return Health{OK: true} },
		slog.New(slog.NewTextHandler(io.Discard, nil)), WithPprof())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if code, body := get(t, "http://"+srv.Addr()+"/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof index = %d", code)
	}
}

func TestABusyAddressIsAClearError(t *testing.T) {
	srv, err := Serve("127.0.0.1:0", prometheus.NewRegistry(), func() Health { return Health{OK: true} }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	_, err = Serve(srv.Addr(), prometheus.NewRegistry(), func() Health { return Health{OK: true} }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "--metrics-addr") {
		t.Fatalf("err = %v, want advice naming --metrics-addr", err)
	}
}
