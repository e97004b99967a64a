package kubemeta

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vigil-sec/vigil/internal/event"
)

func podJSON(uid, name, rv string) string {
	return fmt.Sprintf(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":%q,"namespace":"default","uid":%q,"resourceVersion":%q,
"labels":{"app":"x"},"annotations":{"big":"ignored"},"managedFields":[{"manager":"kubelet"}]},
"spec":{"nodeName":"node-1","containers":[{"name":"app","image":"busybox:1"}]},
"status":{"containerStatuses":[{"name":"app","containerID":"containerd://id-%s","image":"busybox:1","imageID":"sha256:ab"}]}}`, name, uid, rv, uid)
}

// The API server forgets old resource versions (etcd compaction): a watch
// that resumes from one gets 410 Gone, either as the answer or as an ERROR
// event in the stream. The cache then lists the pods again (from etcd, not
// the API server's cache), forgets pods that went away meanwhile and
// watches on from the new list. The API server here is an HTTP server on
// 127.0.0.1 speaking the list/watch protocol, because a real one cannot be
// made to expire a version on demand.
func TestAnExpiredWatchListsThePodsAgainAndWatchesOn(t *testing.T) {
	for _, how := range []string{"as an ERROR event", "as the watch's answer"} {
		t.Run(how, func(t *testing.T) {
			var mu sync.Mutex
			var requests []string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				q := r.URL.Query()
				mu.Lock()
				requests = append(requests, r.URL.RawQuery)
				mu.Unlock()
				if q.Get("fieldSelector") != "spec.nodeName=node-1" || r.URL.Path != "/api/v1/pods" {
					http.Error(w, "wrong request", http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				switch {
				case q.Get("watch") == "" && q.Get("resourceVersion") == "0":
					fmt.Fprintf(w, `{"kind":"PodList","metadata":{"resourceVersion":"10"},"items":[%s]}`, podJSON("uid-a", "a", "9"))
				case q.Get("watch") == "":
					fmt.Fprintf(w, `{"kind":"PodList","metadata":{"resourceVersion":"20"},"items":[%s]}`, podJSON("uid-b", "b", "19"))
				case q.Get("resourceVersion") == "10" && how == "as an ERROR event":
					fmt.Fprint(w, `{"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 10 (15)","reason":"Expired","code":410}}`+"\n")
				case q.Get("resourceVersion") == "10":
					w.WriteHeader(http.StatusGone)
					fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"too old resource version: 10 (15)","reason":"Expired","code":410}`)
				case q.Get("resourceVersion") == "20":
					fmt.Fprintf(w, `{"type":"ADDED","object":%s}`+"\n", podJSON("uid-c", "c", "21"))
					w.(http.Flusher).Flush()
					<-r.Context().Done()
				default:
					http.Error(w, "unexpected resource version", http.StatusBadRequest)
				}
			}))
			cache := runCache(t, srv, "node-1")

			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				cache.mu.RLock()
				_, haveC := cache.byID["id-uid-c"]
				_, aGone := cache.gone["uid-a"]
				cache.mu.RUnlock()
				if haveC && aGone {
					break
				}
				if time.Now().After(deadline) {
					mu.Lock()
					t.Fatalf("after the expiry: pod c known %v, pod a gone %v; requests %q", haveC, aGone, requests)
				}
			}
			if got := counterValue(t, cache.relists); got != 1 {
				t.Errorf("relists = %v, want 1", got)
			}
			if got := counterValue(t, cache.watchErr); got != 0 {
				t.Errorf("an expiry counted as %v watch errors; it is not an error", got)
			}
			ct := eventContainer("uid-b", "id-uid-b")
			cache.Enrich(&ct)
			if ct.Pod != "b" || ct.Name != "app" || ct.Image != "busybox:1" || ct.Labels["app"] != "x" {
				t.Errorf("the relisted pod is described as %+v", ct)
			}
		})
	}
}

// An API server that fails is retried with backoff, each failure logged
// and counted, until it answers.
func TestAFailingAPIServerIsRetriedAndCounted(t *testing.T) {
	var mu sync.Mutex
	fails := 3
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			http.Error(w, `{"kind":"Status","message":"etcdserver: request timed out","reason":"InternalError","code":500}`, http.StatusInternalServerError)
			return
		}
		if r.URL.Query().Get("watch") == "" {
			fmt.Fprintf(w, `{"kind":"PodList","metadata":{"resourceVersion":"5"},"items":[%s]}`, podJSON("uid-a", "a", "4"))
			return
		}
		<-r.Context().Done()
	}))
	cache := runCache(t, srv, "node-1")
	for deadline := time.Now().Add(20 * time.Second); !cache.Synced(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the cache did not sync after the API server recovered")
		}
	}
	if got := counterValue(t, cache.watchErr); got != 3 {
		t.Errorf("watch errors = %v, want the 3 failures", got)
	}
}

func eventContainer(podUID, id string) event.Container {
	return event.Container{PodUID: podUID, ID: id, Runtime: "containerd"}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// runCache runs a cache of node's pods against srv until the test ends
// (the cache stops before the server closes).
func runCache(t *testing.T, srv *httptest.Server, node string) *Cache {
	t.Helper()
	t.Cleanup(srv.Close)
	client, err := newClient(srv.URL, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cache := quietCache(t, client, node)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); cache.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return cache
}
