package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"github.com/vigil-sec/vigil/internal/testutil/syncbuf"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/internal/store/postgres"
	"github.com/vigil-sec/vigil/internal/store/sqlite"
	"github.com/vigil-sec/vigil/internal/testenv"
	"github.com/vigil-sec/vigil/internal/testutil/pgtest"
)

// The hub acknowledges an ingest batch only after its store committed it:
// a hub process killed with SIGKILL while sensors are sending loses none
// of the alerts it acknowledged, on SQLite and on PostgreSQL, and starts
// again cleanly on the same data.
func TestAHubKilledDuringIngestLosesNoAcknowledgedAlert(t *testing.T) {
	bin := buildVigil(t)
	cases := []struct {
		name   string
		metric string // a store metric the hub serves
		db     func(t *testing.T) (dsn string, open func(ctx context.Context, dataDir string) (store.Store, error))
	}{
		{"SQLite", `go_sql_open_connections{db_name="vigil_sqlite_writer"}`, func(t *testing.T) (string, func(context.Context, string) (store.Store, error)) {
			return "", func(ctx context.Context, dataDir string) (store.Store, error) {
				return sqlite.Open(ctx, filepath.Join(dataDir, "vigil.db"))
			}
		}},
		{"PostgreSQL", "vigil_store_postgres_connections", func(t *testing.T) (string, func(context.Context, string) (store.Store, error)) {
			testenv.RequireRoot(t)
			srv, reason, err := pgtest.StartServer()
			if err != nil {
				t.Fatalf("start PostgreSQL: %v", err)
			}
			testenv.Require(t, srv != nil, reason)
			t.Cleanup(func() { _ = srv.Stop() })
			dsn := srv.NewDatabase(t)
			return dsn, func(ctx context.Context, _ string) (store.Store, error) { return postgres.Open(ctx, dsn) }
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dsn, open := tc.db(t)
			dataDir := t.TempDir()
			owner, err := auth.GenerateSecret()
			if err != nil {
				t.Fatal(err)
			}
			h := startHubProcess(t, bin, dataDir, dsn, owner)
			sensorToken, clusterID := registerSensor(t, h, owner)

			// Four senders post batches of 50 alerts as fast as the hub
			// takes them; each remembers the batches the hub acknowledged.
			var (
				mu    sync.Mutex
				acked []string
				sent  [][]byte // every batch body, acknowledged or not
			)
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for b := 0; ; b++ {
						ids, body := ingestBatch(t, clusterID, fmt.Sprintf("w%d-b%d", w, b), 50)
						mu.Lock()
						sent = append(sent, body)
						mu.Unlock()
						if err := postBatch(h.client, h.url, sensorToken, body, len(ids)); err != nil {
							return // the hub is gone
						}
						mu.Lock()
						acked = append(acked, ids...)
						mu.Unlock()
					}
				}()
			}
			// Kill the hub mid-stream once it has acknowledged a good number.
			deadline := time.Now().Add(60 * time.Second)
			for {
				mu.Lock()
				n := len(acked)
				mu.Unlock()
				if n >= 5000 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the hub acknowledged only %d alerts in 60s", n)
				}
				time.Sleep(20 * time.Millisecond)
			}
			h.kill(t)
			wg.Wait()
			t.Logf("acknowledged %d alerts in %d batches sent before SIGKILL", len(acked), len(sent))

			// Restart on the same data: ready, and replaying every batch sent
			// (as sensors do for those without an acknowledgement) is accepted.
			h = startHubProcess(t, bin, dataDir, dsn, owner)
			for _, body := range sent {
				if err := postBatch(h.client, h.url, sensorToken, body, 50); err != nil {
					t.Fatalf("replaying a batch after the restart: %v", err)
				}
			}
			if m := h.get(t, "/metrics"); !strings.Contains(m, tc.metric) {
				t.Errorf("/metrics lacks the store's %s", tc.metric)
			}
			h.stop(t)

			ctx := context.Background()
			st, err := open(ctx, dataDir)
			if err != nil {
				t.Fatalf("open the store after the hub stopped: %v", err)
			}
			defer st.Close()
			lost := 0
			for _, id := range acked {
				a, err := st.GetAlert(ctx, id)
				if err != nil {
					if lost < 5 {
						t.Errorf("acknowledged alert %s is not in the store: %v", id, err)
					}
					lost++
					continue
				}
				if a.Count != 1 {
					t.Errorf("alert %s has count %d after a replay; want 1 (ingest is idempotent)", id, a.Count)
				}
			}
			if lost > 0 {
				t.Fatalf("%d of %d acknowledged alerts were lost", lost, len(acked))
			}
		})
	}
}

// hubProcess is a `vigil hub` child process.
type hubProcess struct {
	cmd    *exec.Cmd
	url    string
	client *http.Client
	ca     []byte
	stderr *syncbuf.Buffer
	exited chan error
}

// startHubProcess runs `vigil hub` on an ephemeral loopback port and
// waits until it serves.
func startHubProcess(t *testing.T, bin, dataDir, dsn, owner string) *hubProcess {
	t.Helper()
	return startHubProcessAt(t, bin, "127.0.0.1:0", dataDir, dsn, owner)
}

// startHubProcessAt is startHubProcess listening on listen.
func startHubProcessAt(t *testing.T, bin, listen, dataDir, dsn, owner string) *hubProcess {
	t.Helper()
	args := []string{"hub", "--data-dir", dataDir, "--listen", listen, "--log-format", "json", "--bootstrap-token", owner}
	if dsn != "" {
		args = append(args, "--db", dsn)
	}
	h := &hubProcess{cmd: daemonCommand(bin, args...), stderr: &syncbuf.Buffer{}, exited: make(chan error, 1)}
	pr, pw := io.Pipe()
	h.cmd.Stdout = io.Discard
	h.cmd.Stderr = io.MultiWriter(h.stderr, pw)
	if err := h.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { h.exited <- h.cmd.Wait(); pw.Close() }()
	t.Cleanup(func() {
		if h.cmd.ProcessState == nil {
			_ = h.cmd.Process.Kill()
			<-h.exited
		}
	})
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var line struct{ Msg, URL string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "hub serving" {
				urlc <- line.URL
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case h.url = <-urlc:
	case err := <-h.exited:
		t.Fatalf("vigil hub exited at start: %v\n%s", err, h.stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("vigil hub did not serve within 60s:\n%s", h.stderr.String())
	}
	ca, err := os.ReadFile(filepath.Join(dataDir, "tls", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("tls/ca.crt holds no certificate")
	}
	h.ca = ca
	h.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 8}}
	h.get(t, "/readyz")
	return h
}

// get returns the body of a GET of path (which must answer 200).
func (h *hubProcess) get(t *testing.T, path string) string {
	t.Helper()
	resp, err := h.client.Get(h.url + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %d, %v", path, resp.StatusCode, err)
	}
	return string(b)
}

func (h *hubProcess) kill(t *testing.T) {
	t.Helper()
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-h.exited
	h.client.CloseIdleConnections()
}

// stop ends the hub with SIGTERM and expects a clean exit.
func (h *hubProcess) stop(t *testing.T) {
	t.Helper()
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-h.exited:
		if err != nil {
			t.Errorf("vigil hub did not exit cleanly on SIGTERM: %v\n%s", err, h.stderr.String())
		}
	case <-time.After(30 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.exited
		t.Errorf("vigil hub did not stop within 30s of SIGTERM")
	}
	h.client.CloseIdleConnections()
}

// registerSensor creates a cluster and a sensor token for it with the
// Owner token, through the API.
func registerSensor(t *testing.T, h *hubProcess, owner string) (token, clusterID string) {
	t.Helper()
	ctx := context.Background()
	c, err := hubclient.New(hubclient.Config{Hub: h.url, Token: owner, CAPEM: string(h.ca)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseIdleConnections()
	clusterID = "/subscriptions/default/resourceGroups/kill/providers/Vigil.Kubernetes/connectedClusters/c1"
	if err := c.Do(ctx, http.MethodPut, clusterID, nil, map[string]any{"location": "local"}, nil); err != nil {
		t.Fatalf("create cluster: %v", err)
	}
	tok, err := c.CreateToken(ctx, hubclient.TokenCreate{Name: "sensor", Kind: "sensor", ClusterID: clusterID})
	if err != nil {
		t.Fatalf("create sensor token: %v", err)
	}
	return tok.Properties.Secret, clusterID
}

// ingestBatch returns a batch of n new alerts with IDs prefix-0..n-1.
func ingestBatch(t *testing.T, clusterID, prefix string, n int) ([]string, []byte) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	ids := make([]string, n)
	alerts := make([]alert.Alert, n)
	for i := range alerts {
		ids[i] = fmt.Sprintf("kill-%s-%d", prefix, i)
		alerts[i] = alert.Alert{
			ID: ids[i], AlertType: "vigil.node/TestAlert", DisplayName: "vigil test alert (not a threat)",
			Severity: alert.SeverityHigh, Status: alert.StatusActive, StartTime: now, EndTime: now, Count: 1,
			Entities: alert.Entities{Node: "node-1", Process: &alert.Process{Path: "/bin/sh", CommandLine: "sh -c 'echo VIGIL-TEST-ALERT-7f3b'"}},
		}
	}
	body, err := json.Marshal(map[string]any{"cluster": clusterID, "node": "node-1", "batchId": prefix, "alerts": alerts})
	if err != nil {
		t.Fatal(err)
	}
	return ids, body
}

// postBatch sends one batch and returns nil only for the hub's
// acknowledgement of all n alerts.
func postBatch(c *http.Client, url, token string, body []byte, n int) error {
	req, err := http.NewRequest(http.MethodPost, url+"/ingest/v1/alerts", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var ack struct{ Accepted int }
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ingest: %s: %s", resp.Status, b)
	}
	if err := json.Unmarshal(b, &ack); err != nil || ack.Accepted != n {
		return fmt.Errorf("ingest: acknowledgement %s does not accept %d alerts", b, n)
	}
	return nil
}
