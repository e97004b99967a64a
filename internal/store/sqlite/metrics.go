package sqlite

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Collector returns a Prometheus collector of the writer connection's and
// the reader pool's state (go_sql_* with db_name "vigil_sqlite_writer" and
// "vigil_sqlite_readers"), for the hub to register. A growing wait count
// of the writer means writes queue behind each other.
func (s *Store) Collector() prometheus.Collector {
	return multiCollector{
		collectors.NewDBStatsCollector(s.w, "vigil_sqlite_writer"),
		collectors.NewDBStatsCollector(s.r, "vigil_sqlite_readers"),
	}
}

type multiCollector []prometheus.Collector

func (m multiCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m {
		c.Describe(ch)
	}
}

func (m multiCollector) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m {
		c.Collect(ch)
	}
}
