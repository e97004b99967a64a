// Package kubemeta keeps the Kubernetes metadata of the pods on one node —
// name, namespace, labels, owning workload, and each container's name and
// image — and fills it into the sensor's container attributions.
//
// It watches the API server for the pods scheduled to its node only (a
// field selector on spec.nodeName, as kubelet does), so its memory and
// watch traffic grow with the node, not the cluster. A cgroup path names
// the pod by UID as soon as the container exists; the pod object exists
// before any of its containers starts, but the container's ID appears in
// the pod's status only once kubelet has reported it. Enrich therefore
// fills what it knows at once, Complete says whether anything is still
// missing, and Wait blocks (bounded by its context) until it arrives, so
// an alert never leaves the node with an empty pod because its container
// was quicker than the API server.
//
// It talks to the API server with net/http and a few JSON types (Client,
// InClusterClient, KubeconfigClient), not client-go: the sensor binary
// links no Kubernetes client library (issue 8, P6).
package kubemeta

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/internal/event"
)

// Config configures a Cache.
type Config struct {
	// Client talks to the API server (in a pod: InClusterClient).
	Client *Client
	// Node is the node whose pods are watched (the Kubernetes node name,
	// e.g. from the downward API's spec.nodeName).
	Node string
	// Logger (default slog.Default()).
	Logger *slog.Logger
	// Registerer receives the cache's metrics (optional).
	Registerer prometheus.Registerer
	// Linger keeps a deleted pod's metadata this long, for alerts about
	// its last moments that arrive late (default 2 minutes).
	Linger time.Duration
}

// Cache is the node's pod metadata. It is safe for concurrent use.
type Cache struct {
	cfg Config
	log *slog.Logger

	mu      sync.RWMutex
	byUID   map[string]*podMeta
	byID    map[string]containerMeta // container id (no runtime prefix) → name, image, pod
	changed chan struct{}            // closed (and replaced) on every change
	synced  bool
	gone    map[string]time.Time // pod uid → when it was deleted

	pods     prometheus.GaugeFunc
	lookups  *prometheus.CounterVec
	waited   prometheus.Histogram
	watchErr prometheus.Counter
	relists  prometheus.Counter
}

type podMeta struct {
	uid, name, namespace string
	labels               map[string]string
	workload             string
	// specs are the pod's containers in spec order (regular containers
	// first), for a container whose ID the status does not list yet.
	specs []containerSpec
	// reported counts the regular containers whose IDs the status lists.
	reported int
}

type containerSpec struct{ name, image string }

type containerMeta struct {
	podUID, name, image string
}

// New returns a Cache; call Run to fill it.
func New(cfg Config) (*Cache, error) {
	if cfg.Client == nil {
		return nil, fmt.Errorf("kubemeta: no Kubernetes client")
	}
	if cfg.Node == "" {
		return nil, fmt.Errorf("kubemeta: no node name: set the sensor's --node (in a DaemonSet from the downward API's spec.nodeName)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 2 * time.Minute
	}
	c := &Cache{
		cfg: cfg, log: cfg.Logger,
		byUID:   map[string]*podMeta{},
		byID:    map[string]containerMeta{},
		gone:    map[string]time.Time{},
		changed: make(chan struct{}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_sensor_kube_lookups_total",
			Help: "Container attributions looked up in the node's pod metadata, by result (complete, partial: the container's status was not reported yet, unknown: no such pod).",
		}, []string{"result"}),
		waited: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vigil_sensor_kube_wait_seconds",
			Help:    "How long alerts waited for their pod's metadata.",
			Buckets: []float64{0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10},
		}),
		watchErr: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_sensor_kube_watch_errors_total",
			Help: "Errors of the pod list/watch against the API server (it retries with backoff).",
		}),
		relists: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_sensor_kube_relists_total",
			Help: "Times the node's pods were listed again because the watch's resource version had expired (410 Gone).",
		}),
	}
	c.pods = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vigil_sensor_kube_pods", Help: "Pods of this node whose metadata the sensor holds.",
	}, func() float64 {
		c.mu.RLock()
		defer c.mu.RUnlock()
		return float64(len(c.byUID))
	})
	if cfg.Registerer != nil {
		for _, m := range []prometheus.Collector{c.pods, c.lookups, c.waited, c.watchErr, c.relists} {
			if err := cfg.Registerer.Register(m); err != nil {
				return nil, fmt.Errorf("kubemeta: register metrics: %w", err)
			}
		}
	}
	return c, nil
}

// Synced reports whether the first list of the node's pods arrived.
func (c *Cache) Synced() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.synced
}

func (c *Cache) upsert(p *pod) {
	m := &podMeta{
		uid: p.Metadata.UID, name: p.Metadata.Name, namespace: p.Metadata.Namespace,
		labels: p.Metadata.Labels, workload: workloadOf(p),
	}
	for _, ct := range p.Spec.Containers {
		m.specs = append(m.specs, containerSpec{ct.Name, ct.Image})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byUID[m.uid] = m
	delete(c.gone, m.uid)
	for i, list := range [][]containerStatus{p.Status.ContainerStatuses, p.Status.InitContainerStatuses, p.Status.EphemeralContainerStatuses} {
		for _, st := range list {
			if id := stripRuntime(st.ContainerID); id != "" {
				if i == 0 {
					m.reported++
				}
				image := specImage(p, st.Name)
				if image == "" {
					image = st.Image
				}
				c.byID[id] = containerMeta{podUID: m.uid, name: st.Name, image: image}
			}
		}
	}
	c.broadcastLocked()
}

func (c *Cache) remove(p *pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gone[p.Metadata.UID] = time.Now()
}

// expire forgets pods deleted more than Linger ago.
func (c *Cache) expire(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for uid, at := range c.gone {
		if now.Sub(at) < c.cfg.Linger {
			continue
		}
		delete(c.gone, uid)
		delete(c.byUID, uid)
		for id, cm := range c.byID {
			if cm.podUID == uid {
				delete(c.byID, id)
			}
		}
	}
}

func (c *Cache) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Enrich fills in what the cache knows about ct's pod and container now.
// It never blocks on the API server. Host and non-Kubernetes attributions
// are left alone.
func (c *Cache) Enrich(ct *event.Container) {
	if ct == nil || ct.Host || (ct.PodUID == "" && ct.ID == "") {
		return
	}
	c.mu.RLock()
	res := c.fillLocked(ct)
	c.mu.RUnlock()
	c.lookups.WithLabelValues(res).Inc()
}

// fillLocked fills ct and says how complete it is.
func (c *Cache) fillLocked(ct *event.Container) string {
	cm, haveID := c.byID[ct.ID]
	uid := ct.PodUID
	if uid == "" && haveID {
		uid = cm.podUID
	}
	p := c.byUID[uid]
	if p == nil {
		return "unknown"
	}
	ct.PodUID, ct.Pod, ct.Namespace, ct.Workload = p.uid, p.name, p.namespace, p.workload
	if len(p.labels) > 0 {
		ct.Labels = p.labels // shared and never modified: upsert replaces the map
	}
	switch {
	case haveID:
		ct.Name, ct.Image = cm.name, cm.image
	case p.reported >= len(p.specs):
		// Every container of the pod has been reported and this is none
		// of them: the pod's sandbox ("pause"), which has no name.
	default:
		return "partial"
	}
	return "complete"
}

// Complete reports whether ct lacks nothing the cache could add: it is not
// a pod's container, or its pod and container are known (a pod's sandbox
// has no container name: it is complete once every container of its pod
// was reported).
func (c *Cache) Complete(ct *event.Container) bool {
	if ct == nil || ct.Host || ct.PodUID == "" {
		return true
	}
	if ct.Pod == "" {
		return false
	}
	if ct.Name != "" {
		return true
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if _, known := c.byID[ct.ID]; known {
		return false // its name arrived after ct was filled: fill it again
	}
	p := c.byUID[ct.PodUID]
	return p != nil && p.reported >= len(p.specs)
}

// Wait fills ct like Enrich and, while it is incomplete, waits for the
// metadata to arrive until ctx ends. It reports whether ct is complete.
func (c *Cache) Wait(ctx context.Context, ct *event.Container) bool {
	start := time.Now()
	defer func() { c.waited.Observe(time.Since(start).Seconds()) }()
	for {
		c.mu.RLock()
		res := c.fillLocked(ct)
		changed := c.changed
		c.mu.RUnlock()
		if res == "complete" {
			c.lookups.WithLabelValues(res).Inc()
			return true
		}
		select {
		case <-ctx.Done():
			c.lookups.WithLabelValues(res).Inc()
			return c.Complete(ct)
		case <-changed:
		}
	}
}

// stripRuntime turns "containerd://<id>" into "<id>".
func stripRuntime(id string) string {
	if i := strings.Index(id, "://"); i >= 0 {
		return id[i+3:]
	}
	return id
}

func specImage(p *pod, name string) string {
	for _, ct := range p.Spec.Containers {
		if ct.Name == name {
			return ct.Image
		}
	}
	for _, ct := range p.Spec.InitContainers {
		if ct.Name == name {
			return ct.Image
		}
	}
	return ""
}

// replicaSetOfDeployment matches the name kube-controller-manager gives a
// Deployment's ReplicaSet: <deployment>-<pod-template-hash>.
var replicaSetOfDeployment = regexp.MustCompile(`^(.+)-[0-9a-z]{5,10}$`)

// cronJobJob matches the name of a Job created by a CronJob:
// <cronjob>-<scheduled time in minutes>.
var cronJobJob = regexp.MustCompile(`^(.+)-[0-9]{8,}$`)

// workloadOf names the workload that controls p as Kind/Name, following
// the controller chain Kubernetes' own controllers create (ReplicaSet →
// Deployment, Job → CronJob) by their naming conventions, without extra
// API calls. A pod nobody controls is Pod/<name>.
func workloadOf(p *pod) string {
	ref := p.controller()
	if ref == nil {
		return "Pod/" + p.Metadata.Name
	}
	switch ref.Kind {
	case "ReplicaSet":
		if h := p.Metadata.Labels["pod-template-hash"]; h != "" && strings.HasSuffix(ref.Name, "-"+h) {
			return "Deployment/" + strings.TrimSuffix(ref.Name, "-"+h)
		}
		if m := replicaSetOfDeployment.FindStringSubmatch(ref.Name); m != nil && p.Metadata.Labels["pod-template-hash"] != "" {
			return "Deployment/" + m[1]
		}
	case "Job":
		if m := cronJobJob.FindStringSubmatch(ref.Name); m != nil {
			return "CronJob/" + m[1]
		}
	}
	return ref.Kind + "/" + ref.Name
}
