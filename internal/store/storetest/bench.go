package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/store"
)

// IngestBatch is the batch size BenchIngest ingests (a sensor's typical
// full batch).
const IngestBatch = 500

// BenchIngest measures IngestAlerts with batches of IngestBatch new alerts
// and reports alerts/s.
func BenchIngest(b *testing.B, s store.Store) {
	r := store.ClusterRef{Subscription: "sub-bench", ResourceGroup: "rg", Name: "bench"}
	batches := make([][]store.Alert, b.N)
	for n := range batches {
		batch := make([]store.Alert, IngestBatch)
		for i := range batch {
			a := newAlert(fmt.Sprintf("bench-%06d-%03d", n, i), time.Duration(n*IngestBatch+i)*time.Millisecond)
			a.Entities.Process.CommandLine = fmt.Sprintf("/usr/bin/python3 -c 'import socket; s=socket.socket(); s.connect((\"10.0.0.%d\", 4444))'", i%250)
			a.Tactics, a.Techniques = []string{"Execution", "CommandAndControl"}, []string{"T1059", "T1071"}
			batch[i] = a
		}
		batches[n] = batch
	}
	b.ResetTimer()
	start := time.Now()
	for n := range b.N {
		res, err := s.IngestAlerts(b.Context(), r, batches[n])
		if err != nil {
			b.Fatalf("ingest batch %d: %v", n, err)
		}
		if res.Inserted != IngestBatch {
			b.Fatalf("batch %d: %+v, want %d inserted", n, res, IngestBatch)
		}
	}
	b.ReportMetric(float64(b.N*IngestBatch)/time.Since(start).Seconds(), "alerts/s")
}
