package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/store"
)

// recorder is a real HTTP receiver that answers with the given statuses in
// turn (then 200) and records each request.
type recorder struct {
	mu       sync.Mutex
	statuses []int
	bodies   [][]byte
	headers  []http.Header
	srv      *httptest.Server
}

func newRecorder(t *testing.T, statuses ...int) *recorder {
	t.Helper()
	r := &recorder{statuses: statuses}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		i := len(r.bodies)
		r.bodies = append(r.bodies, b)
		r.headers = append(r.headers, req.Header.Clone())
		status := http.StatusOK
		if i < len(r.statuses) {
			status = r.statuses[i]
		}
		r.mu.Unlock()
		if status == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		w.WriteHeader(status)
		io.WriteString(w, http.StatusText(status))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) requests() ([][]byte, []http.Header) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bodies, r.headers
}

func buildWebhook(t *testing.T, cfg map[string]string) Notifier {
	t.Helper()
	n, _, err := Build(store.Output{Name: "hook", Type: "webhook", Config: cfg, Enabled: true}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestWebhookRetriesAfter503AndDeliversTheAlert(t *testing.T) {
	rec := newRecorder(t, 503, 503)
	n := buildWebhook(t, map[string]string{
		"url": rec.srv.URL + "/alerts", "retries": "3", "backoff": "10ms",
		"header.Authorization": "Bearer s3cret", "header.X-Team": "secops",
	})
	a := sampleAlert("a-503", "High")
	if err := n.Notify(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	bodies, headers := rec.requests()
	if len(bodies) != 3 {
		t.Fatalf("%d requests, want 3 (two 503s, then success)", len(bodies))
	}
	for i := range bodies {
		if string(bodies[i]) != string(bodies[0]) {
			t.Fatal("a retry sent a different body")
		}
		h := headers[i]
		if h.Get("Authorization") != "Bearer s3cret" || h.Get("X-Team") != "secops" || h.Get("Content-Type") != "application/json" || h.Get("X-Vigil-Alert-Id") != "a-503" {
			t.Fatalf("request %d headers: %v", i, h)
		}
	}
	var got store.Alert
	if err := json.Unmarshal(bodies[0], &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != "a-503" || got.DisplayName != a.DisplayName || got.Cluster != a.Cluster || got.Entities.Process.Path != "/tmp/xmrig" {
		t.Fatalf("delivered alert %+v", got)
	}
}

func TestWebhookFailureHandling(t *testing.T) {
	cases := []struct {
		name         string
		statuses     []int
		wantRequests int
		mention      []string
	}{
		{"a client error is not retried", []int{400}, 1, []string{"400 Bad Request", "rejected", "hook"}},
		{"unauthorized says to check credentials", []int{401}, 1, []string{"401", "credentials"}},
		{"persistent 503 gives up after the retries", []int{503, 503, 503}, 3, []string{"after 3 attempts", "503"}},
		{"429 is retried", []int{429}, 2, nil},
		{"408 is retried", []int{408}, 2, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder(t, tc.statuses...)
			n := buildWebhook(t, map[string]string{"url": rec.srv.URL + "/hooks/T000/B000/XXXXSECRET", "retries": "2", "backoff": "5ms"})
			err := n.Notify(context.Background(), sampleAlert("a", "High"))
			bodies, _ := rec.requests()
			if len(bodies) != tc.wantRequests {
				t.Fatalf("%d requests, want %d", len(bodies), tc.wantRequests)
			}
			if len(tc.mention) == 0 {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, m := range tc.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
			if strings.Contains(err.Error(), "XXXXSECRET") {
				t.Errorf("error %q leaks the URL path", err)
			}
		})
	}
}

func TestWebhookTimesOutASlowReceiver(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	n := buildWebhook(t, map[string]string{"url": srv.URL, "timeout": "200ms", "retries": "0"})
	start := time.Now()
	err := n.Notify(context.Background(), sampleAlert("slow", "High"))
	if err == nil || !strings.Contains(err.Error(), "200ms") {
		t.Fatalf("err = %v, want a timeout naming 200ms", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestWebhookStopsRetryingWhenCancelled(t *testing.T) {
	rec := newRecorder(t, 503, 503, 503, 503, 503)
	n := buildWebhook(t, map[string]string{"url": rec.srv.URL, "retries": "5", "backoff": "10s"})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := n.Notify(ctx, sampleAlert("c", "High"))
	if err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
}

// falcosidekickPayload mirrors falcosidekick's types.FalcoPayload, which
// is how falcosidekick decodes what it receives.
type falcosidekickPayload struct {
	UUID         string         `json:"uuid,omitempty"`
	Output       string         `json:"output"`
	Priority     string         `json:"priority"`
	Rule         string         `json:"rule"`
	Time         time.Time      `json:"time"`
	OutputFields map[string]any `json:"output_fields"`
	Source       string         `json:"source"`
	Tags         []string       `json:"tags,omitempty"`
	Hostname     string         `json:"hostname,omitempty"`
}

// falcoPriorities are the priorities falcosidekick parses.
var falcoPriorities = []string{"Emergency", "Alert", "Critical", "Error", "Warning", "Notice", "Informational", "Debug"}

func TestFalcoFormatSendsAPayloadFalcosidekickAccepts(t *testing.T) {
	rec := newRecorder(t)
	n := buildWebhook(t, map[string]string{"url": rec.srv.URL, "format": "falco"})
	a := sampleAlert("f-1", "High")
	if err := n.Notify(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	bodies, _ := rec.requests()
	var p falcosidekickPayload
	dec := json.NewDecoder(strings.NewReader(string(bodies[0])))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("falcosidekick could not decode %s: %v", bodies[0], err)
	}
	if p.Output == "" {
		t.Fatal("empty output: falcosidekick rejects it")
	}
	wantOutput := "2026-11-25T19:47:50.030201715Z: Critical Digital currency mining related behavior detected (node=node-1 namespace=web pod=shop-7d9f container=php image=registry.local:5000/shop/php:8.3 process=/tmp/xmrig"
	if !strings.HasPrefix(p.Output, wantOutput) || strings.Contains(p.Output, "\n") {
		t.Errorf("output = %q\nwant prefix %q", p.Output, wantOutput)
	}
	if p.Priority != "Critical" || p.Rule != a.DisplayName || p.Source != "vigil" || p.Hostname != "node-1" || !p.Time.Equal(t0) {
		t.Errorf("payload = %+v", p)
	}
	if len(p.UUID) != 36 || strings.Count(p.UUID, "-") != 4 {
		t.Errorf("uuid %q", p.UUID)
	}
	if again := ToFalco(a); again.UUID != p.UUID {
		t.Error("the uuid of the same alert changed between deliveries")
	}
	wantFields := map[string]any{
		"k8s.ns.name":                "web",
		"k8s.pod.name":               "shop-7d9f",
		"container.id":               "0123456789ab",
		"container.image.repository": "registry.local:5000/shop/php",
		"container.image.tag":        "8.3",
		"proc.exepath":               "/tmp/xmrig",
		"proc.name":                  "xmrig",
		"proc.cmdline":               a.Entities.Process.CommandLine,
		"proc.pid":                   float64(4242),
		"user.name":                  "www-data",
		"proc.pname":                 "sh",
		"fd.rip":                     "203.0.113.9",
		"fd.rport":                   float64(3333),
		"fd.rip.name":                "pool.example",
		"vigil.alert_id":             "f-1",
		"vigil.alert_type":           "vigil.node/DigitalCurrencyMining",
		"vigil.cluster":              sampleClusterID,
		"vigil.count":                float64(2),
	}
	for k, v := range wantFields {
		if p.OutputFields[k] != v {
			t.Errorf("output_fields[%s] = %#v, want %#v", k, p.OutputFields[k], v)
		}
	}
	wantTags := []string{"vigil", "mitre_execution", "mitre_command_and_control", "T1496"}
	if strings.Join(p.Tags, ",") != strings.Join(wantTags, ",") {
		t.Errorf("tags = %v, want %v", p.Tags, wantTags)
	}
}

func TestFalcoPriorityMapping(t *testing.T) {
	cases := map[string]string{
		"High": "Critical", "Medium": "Warning", "Low": "Notice", "Informational": "Informational",
		"high": "Critical", "": "Informational",
	}
	for sev, want := range cases {
		got := ToFalco(sampleAlert("x", sev)).Priority
		if got != want {
			t.Errorf("severity %q → %q, want %q", sev, got, want)
		}
		known := false
		for _, p := range falcoPriorities {
			known = known || p == got
		}
		if !known {
			t.Errorf("priority %q is not one falcosidekick knows", got)
		}
	}
}
