// Package telemetry serves /metrics (Prometheus) and /healthz for every
// long-running vigil role.
package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Health is reported by /healthz: HTTP 200 when OK, 503 otherwise, with
// the struct as JSON so an operator sees why.
type Health struct {
	OK      bool   `json:"ok"`
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// Server is a running metrics/health endpoint.
type Server struct {
	srv  *http.Server
	addr string
	done chan error
}

// Option configures Serve.
type Option func(*http.ServeMux)

// WithPprof also serves Go's profiler under /debug/pprof/ (for measuring
// the sensor's own cost; keep the address private).
func WithPprof() Option {
	return func(mux *http.ServeMux) {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
}

// Serve listens on addr ("127.0.0.1:0" picks a free port) and serves
// /metrics from reg and /healthz from health.
func Serve(addr string, reg *prometheus.Registry, health func() Health, log *slog.Logger, opts ...Option) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics endpoint: listen on %s: %w (pick a free address with --metrics-addr)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		h := health()
		w.Header().Set("Content-Type", "application/json")
		if !h.OK {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(h)
	})
	for _, o := range opts {
		o(mux)
	}
	s := &Server{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		addr: ln.Addr().String(),
		done: make(chan error, 1),
	}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		if err != nil {
			log.Error("metrics endpoint stopped", "addr", s.addr, "err", err)
		}
		s.done <- err
	}()
	log.Info("serving metrics and health", "metrics", "http://"+s.addr+"/metrics", "healthz", "http://"+s.addr+"/healthz")
	return s, nil
}

// Addr is the address actually listened on.
func (s *Server) Addr() string { return s.addr }

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
