package sensor

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/event"
)

type metrics struct {
	events     *prometheus.CounterVec
	byKind     map[event.Kind]prometheus.Counter // events' children, resolved once
	sinkErrors prometheus.Counter
	repeats    *prometheus.CounterVec // connections folded by the kernel's repeat window, by kind
	repeatsBy  map[event.Kind]prometheus.Counter
}

// countEvent increments the per-kind counter without a label lookup on
// the hot path.
func (m *metrics) countEvent(k event.Kind) {
	c, ok := m.byKind[k]
	if !ok {
		c = m.events.WithLabelValues(string(k))
	}
	c.Inc()
}

// countRepeats adds the connections the kernel folded into ev.
func (m *metrics) countRepeats(ev *event.Event) {
	if ev.Network == nil || ev.Network.Repeats <= 0 {
		return
	}
	c, ok := m.repeatsBy[ev.Kind]
	if !ok {
		c = m.repeats.WithLabelValues(string(ev.Kind))
	}
	c.Add(float64(ev.Network.Repeats))
}

// newMetrics registers the sensor's metrics on its own registry (no
// global state): counters read from the source at scrape time, so the
// hot path only increments one counter per event.
func newMetrics(s *Sensor) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_sensor_events_total", Help: "Events delivered to sinks, by kind.",
		}, []string{"kind"}),
		sinkErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_sensor_sink_errors_total", Help: "Events a sink failed to write (lost).",
		}),
		repeats: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_sensor_network_repeats_total",
			Help: "Connections (kind connect or accept) counted in the kernel instead of being sent, because a like one was reported within --network-repeat-window.",
		}, []string{"kind"}),
	}
	m.repeatsBy = map[event.Kind]prometheus.Counter{
		event.KindConnect: m.repeats.WithLabelValues(string(event.KindConnect)),
		event.KindAccept:  m.repeats.WithLabelValues(string(event.KindAccept)),
	}
	m.byKind = make(map[event.Kind]prometheus.Counter, len(event.AllKinds))
	for _, k := range event.AllKinds {
		m.byKind[k] = m.events.WithLabelValues(string(k))
	}
	counter := func(name, help string, f func(c counters) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(s.src.counters())) })
	}
	missing := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vigil_sensor_missing_kind", Help: "1 for each event kind the sensor cannot observe in its current mode.",
	}, []string{"kind"})
	for _, k := range s.src.Missing() {
		missing.WithLabelValues(string(k)).Set(1)
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vigil_sensor_source_info", Help: "The event source in use (label mode: ebpf or proc); 1 = active.",
	}, []string{"mode"})
	info.WithLabelValues(s.mode).Set(1)
	degraded := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "vigil_sensor_degraded", Help: "1 when the sensor runs without eBPF (proc-connector fallback).",
	})
	if s.mode == ModeProc {
		degraded.Set(1)
	}
	s.reg.MustRegister(
		m.events, m.sinkErrors, m.repeats, missing, info, degraded,
		counter("vigil_sensor_kernel_records_total", "Records the kernel tried to send to the sensor.",
			func(c counters) uint64 { return c.Seen }),
		counter("vigil_sensor_drops_total", "Records lost before the sensor could read them (ring full, netlink overrun).",
			func(c counters) uint64 { return c.Dropped }),
		counter("vigil_sensor_records_delivered_total", "Records the sensor decoded.",
			func(c counters) uint64 { return c.Delivered }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_sensor_ring_pending_bytes", Help: "Bytes waiting in the eBPF ring buffer (ring fill).",
		}, func() float64 { return float64(s.src.counters().RingPending) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_sensor_process_table_size", Help: "Processes tracked by the process tree (live and recently exited).",
		}, func() float64 {
			if s.tree == nil {
				return 0
			}
			return float64(s.tree.Len())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vigil_sensor_process_table_evictions", Help: "Live processes evicted because the table was full.",
		}, func() float64 {
			if s.tree == nil {
				return 0
			}
			return float64(s.tree.Evictions())
		}),
	)
	return m
}
