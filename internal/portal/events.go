package portal

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/store"
)

// broker fans committed alerts out to the open event streams. publish never
// blocks: a stream whose queue is full loses the update.
type broker struct {
	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	closed  bool
	dropped prometheus.Counter
}

type subscriber struct {
	ch   chan store.Alert
	done chan struct{} // closed by the broker on close
}

func newBroker() *broker { return &broker{subs: map[*subscriber]struct{}{}} }

func (b *broker) subscribe() *subscriber {
	s := &subscriber{ch: make(chan store.Alert, 64), done: make(chan struct{})}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		close(s.done)
		return s
	}
	b.subs[s] = struct{}{}
	return s
}

func (b *broker) unsubscribe(s *subscriber) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}

func (b *broker) publish(a store.Alert) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.ch <- a:
		default:
			if b.dropped != nil {
				b.dropped.Inc()
			}
		}
	}
}

func (b *broker) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

func (b *broker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		close(s.done)
		delete(b.subs, s)
	}
}

// liveAlert is what the alerts page's script needs to draw a row.
type liveAlert struct {
	ID          string `json:"id"`
	URL         string `json:"url"`
	Severity    string `json:"severity"`
	DisplayName string `json:"displayName"`
	Cluster     string `json:"cluster"`
	ClusterURL  string `json:"clusterUrl"`
	Namespace   string `json:"namespace"`
	Pod         string `json:"pod"`
	Status      string `json:"status"`
	Count       int    `json:"count"`
	FirstSeen   string `json:"firstSeen"`
	LastSeen    string `json:"lastSeen"`
}

// heartbeatEvery keeps idle streams open through proxies and notices
// ended sessions.
const heartbeatEvery = 15 * time.Second

// eventsStream serves text/event-stream: one "alert" event per committed
// alert the session may read and the page's filter matches. The stream ends
// when the browser goes away, the session ends or the portal closes.
func (p *Portal) eventsStream(w http.ResponseWriter, r *http.Request, s *session) {
	f, err := p.parseListQuery(r, s)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	sub := p.events.subscribe()
	defer p.events.unsubscribe(sub)
	w.WriteHeader(http.StatusOK)
	if _, err := fmt.Fprint(w, "retry: 3000\n: connected\n\n"); err != nil {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}
	tick := time.NewTicker(heartbeatEvery)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-sub.done:
			return
		case <-tick.C:
			// End the stream with the session, or when its token was
			// revoked or expired meanwhile.
			if p.sessions.get(s.id) == nil {
				return
			}
			if _, err := p.cfg.Authenticator.Authenticate(r.Context(), "Bearer "+s.secret); err != nil {
				return
			}
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		case a := <-sub.ch:
			if auth.Authorize(s.principal, auth.ActionRead, auth.ClusterID(a.Cluster)) != nil || !f.matches(a) {
				continue
			}
			b, err := json.Marshal(p.toLive(a))
			if err != nil {
				p.log.Error("portal: encode live alert", "id", a.ID, "err", err)
				continue
			}
			if _, err := fmt.Fprintf(w, "event: alert\nid: %s\ndata: %s\n\n", a.ID, b); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

func (p *Portal) toLive(a store.Alert) liveAlert {
	return liveAlert{ID: a.ID, URL: "/portal/alerts/" + a.ID, Severity: a.Severity, DisplayName: a.DisplayName,
		Cluster: a.Cluster.Name, ClusterURL: clusterPath(a.Cluster), Namespace: a.Entities.Namespace, Pod: a.Entities.Pod,
		Status: a.Status, Count: a.Count, FirstSeen: fmtTime(a.StartTime), LastSeen: fmtTime(a.EndTime)}
}
