package postgres

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns a Prometheus collector of the connection pool's state
// (vigil_store_postgres_*), for the hub to register.
func (s *Store) Collector() prometheus.Collector { return poolCollector{s.pool} }

type poolCollector struct{ pool *pgxpool.Pool }

var (
	poolConns = prometheus.NewDesc("vigil_store_postgres_connections",
		"Connections of the PostgreSQL pool by state (acquired, idle, constructing).", []string{"state"}, nil)
	poolMaxConns = prometheus.NewDesc("vigil_store_postgres_max_connections",
		"Size limit of the PostgreSQL pool (pool_max_conns).", nil, nil)
	poolAcquires = prometheus.NewDesc("vigil_store_postgres_acquires_total",
		"Connections acquired from the PostgreSQL pool.", nil, nil)
	poolWaits = prometheus.NewDesc("vigil_store_postgres_acquire_waits_total",
		"Acquires that had to wait for a connection (a full pool: raise pool_max_conns).", nil, nil)
	poolWaitSeconds = prometheus.NewDesc("vigil_store_postgres_acquire_seconds_total",
		"Time spent acquiring connections from the PostgreSQL pool.", nil, nil)
)

func (c poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolConns, poolMaxConns, poolAcquires, poolWaits, poolWaitSeconds} {
		ch <- d
	}
}

func (c poolCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.pool.Stat()
	ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(st.AcquiredConns()), "acquired")
	ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(st.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(st.ConstructingConns()), "constructing")
	ch <- prometheus.MustNewConstMetric(poolMaxConns, prometheus.GaugeValue, float64(st.MaxConns()))
	ch <- prometheus.MustNewConstMetric(poolAcquires, prometheus.CounterValue, float64(st.AcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolWaits, prometheus.CounterValue, float64(st.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(poolWaitSeconds, prometheus.CounterValue, st.AcquireDuration().Seconds())
}
