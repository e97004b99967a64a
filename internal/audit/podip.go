package audit

import (
	"context"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/vigil-sec/vigil/internal/event"
)

// PodIndex maps pod IP addresses to pods, from a watch of every pod in
// the cluster. Pods on the host network are left out (they share the
// node's address). Lookup is its PodLookup.
type PodIndex struct {
	client kubernetes.Interface
	log    *slog.Logger

	mu     sync.RWMutex
	byIP   map[string]*event.Container
	byUID  map[string][]string // pod UID -> its indexed addresses
	synced bool
}

// NewPodIndex creates an index over client's pods; Run fills it.
func NewPodIndex(client kubernetes.Interface, log *slog.Logger) *PodIndex {
	if log == nil {
		log = slog.Default()
	}
	return &PodIndex{client: client, log: log, byIP: map[string]*event.Container{}, byUID: map[string][]string{}}
}

// Run watches the pods until ctx ends.
func (x *PodIndex) Run(ctx context.Context) {
	f := informers.NewSharedInformerFactory(x.client, 10*time.Minute)
	inf := f.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { x.upsert(o) },
		UpdateFunc: func(_, o any) { x.upsert(o) },
		DeleteFunc: func(o any) { x.remove(o) },
	})
	if err != nil {
		x.log.Error("watching pods for source-address attribution failed; audit alerts will not name pods by address", "err", err)
		return
	}
	f.Start(ctx.Done())
	if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		x.mu.Lock()
		x.synced = true
		x.mu.Unlock()
	}
	<-ctx.Done()
	f.Shutdown()
}

// Synced reports whether the first list of pods arrived.
func (x *PodIndex) Synced() bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.synced
}

// Lookup returns the pod with address ip.
func (x *PodIndex) Lookup(ip string) (*event.Container, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	c, ok := x.byIP[ip]
	return c, ok
}

func podIPs(p *corev1.Pod) []string {
	var ips []string
	for _, a := range p.Status.PodIPs {
		if a.IP != "" {
			ips = append(ips, a.IP)
		}
	}
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = append(ips, p.Status.PodIP)
	}
	return ips
}

func (x *PodIndex) upsert(o any) {
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.forgetLocked(string(p.UID))
	if p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || p.DeletionTimestamp != nil && p.Status.Phase != corev1.PodRunning {
		return
	}
	c := &event.Container{Pod: p.Name, Namespace: p.Namespace, PodUID: string(p.UID), Workload: workloadOf(p), Labels: maps.Clone(p.Labels)}
	ips := podIPs(p)
	for _, ip := range ips {
		x.byIP[ip] = c
	}
	if len(ips) > 0 {
		x.byUID[c.PodUID] = ips
	}
}

// forgetLocked frees the addresses indexed for a pod (unless another pod
// has taken them over since).
func (x *PodIndex) forgetLocked(uid string) {
	for _, ip := range x.byUID[uid] {
		if c, ok := x.byIP[ip]; ok && c.PodUID == uid {
			delete(x.byIP, ip)
		}
	}
	delete(x.byUID, uid)
}

func (x *PodIndex) remove(o any) {
	if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = t.Obj
	}
	p, ok := o.(*corev1.Pod)
	if !ok {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.forgetLocked(string(p.UID))
}

// workloadOf names the pod's controlling workload as Kind/Name; a
// ReplicaSet created by a Deployment (pod-template-hash suffix) is named
// as the Deployment.
func workloadOf(p *corev1.Pod) string {
	for _, r := range p.OwnerReferences {
		if r.Controller == nil || !*r.Controller {
			continue
		}
		if r.Kind == "ReplicaSet" {
			if h := p.Labels["pod-template-hash"]; h != "" {
				if d, ok := strings.CutSuffix(r.Name, "-"+h); ok {
					return "Deployment/" + d
				}
			}
		}
		return r.Kind + "/" + r.Name
	}
	return ""
}
