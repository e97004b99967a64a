package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/store"
)

// DefaultQueueSize is the per-output queue length when none is given.
const DefaultQueueSize = 1000

// dropLogInterval bounds how often drops of one output are logged.
const dropLogInterval = 10 * time.Second

// DispatcherOptions configure a Dispatcher.
type DispatcherOptions struct {
	// QueueSize is the number of alerts waiting per output (default 1000).
	QueueSize int
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the metrics (nil: not exported).
	Registerer prometheus.Registerer
	// Hostname for syslog messages (default os.Hostname()).
	Hostname string
}

// Dispatcher fans alerts out to outputs. Dispatch never blocks: each
// output has its own bounded queue and worker; a full queue drops the
// alert for that output (counted in vigil_hub_output_dropped_total and
// logged). It is safe for concurrent use.
type Dispatcher struct {
	opts    DispatcherOptions
	log     *slog.Logger
	metrics dispatcherMetrics

	ctx    context.Context // cancelled when Close gives up waiting
	cancel context.CancelFunc

	mu      sync.RWMutex
	workers map[string]*worker
	closed  bool
	wg      sync.WaitGroup
}

type dispatcherMetrics struct {
	sent, failed, dropped *prometheus.CounterVec
	queued                *prometheus.GaugeVec
}

type worker struct {
	n        Notifier
	min      int
	minName  string
	ch       chan store.Alert
	config   *store.Output // the config it was built from (nil for Add)
	dropMu   sync.Mutex
	drops    int // since the last drop log line
	lastDrop time.Time
}

// NewDispatcher returns a Dispatcher without outputs.
func NewDispatcher(opts DispatcherOptions) (*Dispatcher, error) {
	if opts.QueueSize <= 0 {
		opts.QueueSize = DefaultQueueSize
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := dispatcherMetrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_hub_output_sent_total", Help: "Alerts delivered, by output.",
		}, []string{"output"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_hub_output_failed_total", Help: "Alerts an output failed to deliver after its retries (lost for that output), by output.",
		}, []string{"output"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_hub_output_dropped_total", Help: "Alerts dropped because the output's queue was full (receiver too slow or down), by output.",
		}, []string{"output"}),
		queued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigil_hub_output_queue_length", Help: "Alerts waiting for delivery, by output.",
		}, []string{"output"}),
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{m.sent, m.failed, m.dropped, m.queued} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register output metrics: %w", err)
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Dispatcher{
		opts:    opts,
		log:     opts.Logger,
		metrics: m,
		ctx:     ctx,
		cancel:  cancel,
		workers: map[string]*worker{},
	}, nil
}

// Configure makes the enabled outputs of the list the dispatcher's
// outputs (the hub calls it at start and whenever outputs change). Every
// output is validated first; on error nothing changes. Outputs whose
// configuration is unchanged keep their queue; removed or changed ones
// finish their queued alerts in the background.
func (d *Dispatcher) Configure(outputs []store.Output) error {
	type built struct {
		o   store.Output
		n   Notifier
		min string
	}
	var next []built
	seen := map[string]bool{}
	for _, o := range outputs {
		if !o.Enabled {
			continue
		}
		if seen[o.Name] {
			return &ConfigError{Output: o.Name, Setting: "name", Problem: "two outputs have this name"}
		}
		seen[o.Name] = true
		n, minSev, err := Build(o, Options{Logger: d.log, Hostname: d.opts.Hostname})
		if err != nil {
			return err
		}
		next = append(next, built{o, n, minSev})
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("configure outputs: dispatcher is closed")
	}
	for name, w := range d.workers {
		keep := false
		for _, b := range next {
			if b.o.Name == name && w.config != nil && sameConfig(*w.config, b.o) {
				keep = true
			}
		}
		if !keep {
			d.stopLocked(name, w)
		}
	}
	for _, b := range next {
		if _, ok := d.workers[b.o.Name]; ok {
			if c, ok := b.n.(io.Closer); ok {
				c.Close()
			}
			continue
		}
		cfg := b.o
		d.startLocked(b.n, b.min, &cfg)
	}
	return nil
}

func sameConfig(a, b store.Output) bool {
	return a.Type == b.Type && a.MinSeverity == b.MinSeverity && maps.Equal(a.Config, b.Config)
}

// Add adds one notifier (not from a stored output) with a minimum
// severity ("" = everything).
func (d *Dispatcher) Add(n Notifier, minSeverity string) error {
	minName := "Informational"
	if minSeverity != "" {
		var ok bool
		if _, minName, ok = severityRank(minSeverity); !ok {
			return &ConfigError{Output: n.Name(), Setting: "minSeverity", Problem: fmt.Sprintf("%q is not a severity: use Informational, Low, Medium or High", minSeverity)}
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return errors.New("add output: dispatcher is closed")
	}
	if _, ok := d.workers[n.Name()]; ok {
		return &ConfigError{Output: n.Name(), Setting: "name", Problem: "an output with this name exists"}
	}
	d.startLocked(n, minName, nil)
	return nil
}

// Outputs lists the active outputs' names.
func (d *Dispatcher) Outputs() []string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return slices.Sorted(maps.Keys(d.workers))
}

func (d *Dispatcher) startLocked(n Notifier, minName string, cfg *store.Output) {
	rank, _, _ := severityRank(minName)
	w := &worker{n: n, min: rank, minName: minName, ch: make(chan store.Alert, d.opts.QueueSize), config: cfg}
	d.workers[n.Name()] = w
	// Make the series visible at 0 before the first alert.
	d.metrics.sent.WithLabelValues(n.Name())
	d.metrics.failed.WithLabelValues(n.Name())
	d.metrics.dropped.WithLabelValues(n.Name())
	d.metrics.queued.WithLabelValues(n.Name()).Set(0)
	d.wg.Add(1)
	go d.run(w)
}

// stopLocked removes a worker; it drains its queue, then exits.
func (d *Dispatcher) stopLocked(name string, w *worker) {
	delete(d.workers, name)
	close(w.ch)
}

func (d *Dispatcher) run(w *worker) {
	defer d.wg.Done()
	name := w.n.Name()
	defer func() {
		if c, ok := w.n.(io.Closer); ok {
			c.Close()
		}
	}()
	for a := range w.ch {
		d.metrics.queued.WithLabelValues(name).Set(float64(len(w.ch)))
		if d.ctx.Err() != nil {
			d.metrics.failed.WithLabelValues(name).Inc()
			continue
		}
		if err := w.n.Notify(d.ctx, a); err != nil {
			d.metrics.failed.WithLabelValues(name).Inc()
			d.log.Error("alert output failed", "output", name, "alert", a.ID, "alertType", a.AlertType, "err", err)
			continue
		}
		d.metrics.sent.WithLabelValues(name).Inc()
	}
}

// Dispatch queues alerts for every output whose minimum severity they
// reach. It never blocks. The hub calls it for alerts it newly stored as
// Active (not for replays or suppressed alerts).
func (d *Dispatcher) Dispatch(alerts ...store.Alert) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.closed {
		return
	}
	for _, a := range alerts {
		rank := rankOf(a.Severity)
		for name, w := range d.workers {
			if rank < w.min {
				continue
			}
			select {
			case w.ch <- a:
				d.metrics.queued.WithLabelValues(name).Set(float64(len(w.ch)))
			default:
				d.metrics.dropped.WithLabelValues(name).Inc()
				d.logDrop(name, w, a)
			}
		}
	}
}

func (d *Dispatcher) logDrop(name string, w *worker, a store.Alert) {
	w.dropMu.Lock()
	defer w.dropMu.Unlock()
	w.drops++
	if now := time.Now(); now.Sub(w.lastDrop) >= dropLogInterval {
		d.log.Warn("alert output queue full, dropping alerts for it (the receiver is too slow or down)",
			"output", name, "alert", a.ID, "droppedSinceLastLog", w.drops, "queueSize", cap(w.ch))
		w.drops = 0
		w.lastDrop = now
	}
}

// Close stops accepting alerts and waits until the queued ones are
// delivered or ctx ends; then in-flight deliveries are cancelled and the
// rest counted as failed.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		for name, w := range d.workers {
			d.stopLocked(name, w)
		}
	}
	d.mu.Unlock()
	done := make(chan struct{})
	go func() {
		d.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		d.cancel()
		return nil
	case <-ctx.Done():
		d.cancel()
		<-done
		return fmt.Errorf("close alert outputs: queued alerts not all delivered: %w", ctx.Err())
	}
}
