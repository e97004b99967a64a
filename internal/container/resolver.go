package container

import (
	"container/list"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// Enricher adds metadata (name, image, pod name, namespace) that a cgroup
// path does not carry, from CRI or the Kubernetes API. It is called once
// per cache miss, outside the Resolver's lock, with a Container that the
// Resolver has not published yet; it may modify it freely but must not keep
// it. Host attributions are passed too: enrichers ignore what they cannot
// describe.
type Enricher interface {
	Enrich(c *event.Container)
}

// Completer is optionally implemented by an Enricher that knows whether an
// attribution still lacks metadata that may arrive later (a pod's container
// whose status kubelet has not reported yet). The Resolver enriches such an
// attribution again on a later lookup, at most once per RetryInterval.
type Completer interface {
	Complete(c *event.Container) bool
}

// RetryInterval is how often an incomplete attribution is enriched again.
const RetryInterval = time.Second

// DefaultCacheSize is a cache size that holds every cgroup of a busy node.
const DefaultCacheSize = 4096

// Resolver attributes cgroups to containers, caching the attribution by
// cgroup id in a bounded LRU. It is safe for concurrent use.
//
// Cgroup ids are kernfs node ids: unique within one hierarchy while the
// cgroup exists, but ids of different hierarchies (a v1 controller and
// cgroup2 on a hybrid host) can collide. Use one Resolver per hierarchy.
// Each cached entry also remembers its path; a lookup whose path differs
// (an id reused after the cgroup was removed) is treated as a miss.
type Resolver struct {
	size        int
	enricher    Enricher
	hostMountNS uint32
	retryEvery  time.Duration

	mu      sync.Mutex
	entries map[uint64]*list.Element
	lru     *list.List // front: most recently used; values are *entry
}

type entry struct {
	id      uint64
	path    string
	c       *event.Container
	generic bool // only the plain runc/ctr rule matched (see the package doc)
	// retryAt is when an incomplete attribution (see Completer) is
	// enriched again; zero when it is complete.
	retryAt time.Time
}

// ResolverOption configures a Resolver.
type ResolverOption func(*Resolver)

// WithEnricher applies e to every newly resolved cgroup.
func WithEnricher(e Enricher) ResolverOption {
	return func(r *Resolver) { r.enricher = e }
}

// WithRetryInterval sets how often an incomplete attribution is enriched
// again (default RetryInterval).
func WithRetryInterval(d time.Duration) ResolverOption {
	return func(r *Resolver) { r.retryEvery = d }
}

// WithHostMountNS names the host's mount namespace (the inode of
// /proc/1/ns/mnt as the sensor sees it), enabling ResolveProcess's demotion
// of generic cgroups to host.
func WithHostMountNS(ns uint32) ResolverOption {
	return func(r *Resolver) { r.hostMountNS = ns }
}

// hostContainer is the shared attribution of host processes.
var hostContainer = &event.Container{Host: true}

// NewResolver returns a Resolver caching at most size cgroups (size < 1
// means DefaultCacheSize).
func NewResolver(size int, opts ...ResolverOption) *Resolver {
	if size < 1 {
		size = DefaultCacheSize
	}
	r := &Resolver{
		size:    size,
		entries: make(map[uint64]*list.Element, min(size, 1024)),
		lru:     list.New(),

		retryEvery: RetryInterval,
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Resolve returns the attribution of the cgroup with the given kernfs id
// and path (as in Parse). The returned Container is shared by every caller
// resolving the same cgroup: treat it as read-only.
//
// An empty path means the caller only knows the id: Resolve then returns
// the cached attribution, or nil when the cgroup is not cached (read its
// path and resolve again). Id 0 (unknown) is never cached.
func (r *Resolver) Resolve(cgroupID uint64, path string) *event.Container {
	c, _ := r.resolve(cgroupID, path)
	return c
}

// ResolveProcess is Resolve for a process in mount namespace mntns: a
// process in a generic cgroup (see the package doc) that shares the host's
// mount namespace is a host process.
func (r *Resolver) ResolveProcess(cgroupID uint64, path string, mntns uint32) *event.Container {
	c, generic := r.resolve(cgroupID, path)
	if c != nil && generic && r.hostMountNS != 0 && mntns == r.hostMountNS {
		return hostContainer
	}
	return c
}

func (r *Resolver) resolve(cgroupID uint64, path string) (*event.Container, bool) {
	if cgroupID == 0 {
		if path == "" {
			return nil, false
		}
		return r.build(path)
	}
	r.mu.Lock()
	if el, ok := r.entries[cgroupID]; ok {
		e := el.Value.(*entry)
		if path == "" || e.path == path {
			r.lru.MoveToFront(el)
			if e.retryAt.IsZero() || time.Now().Before(e.retryAt) {
				r.mu.Unlock()
				return e.c, e.generic
			}
			// Incomplete and due: enrich again (others keep the old one meanwhile).
			e.retryAt = time.Now().Add(r.retryEvery)
			path = e.path
			r.mu.Unlock()
			return r.refresh(cgroupID, path)
		}
	}
	r.mu.Unlock()
	if path == "" {
		return nil, false
	}

	// Parse and enrich outside the lock: an enricher may call out to CRI.
	c, generic := r.build(path)

	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.entries[cgroupID]; ok {
		e := el.Value.(*entry)
		r.lru.MoveToFront(el)
		if e.path == path {
			return e.c, e.generic // another goroutine resolved it meanwhile
		}
		e.path, e.c, e.generic, e.retryAt = path, c, generic, r.retryAt(c)
		return c, generic
	}
	r.entries[cgroupID] = r.lru.PushFront(&entry{id: cgroupID, path: path, c: c, generic: generic, retryAt: r.retryAt(c)})
	if r.lru.Len() > r.size {
		oldest := r.lru.Back()
		r.lru.Remove(oldest)
		delete(r.entries, oldest.Value.(*entry).id)
	}
	return c, generic
}

// refresh enriches a cached, incomplete attribution again and publishes the
// result as a new Container (published ones are shared and read-only).
func (r *Resolver) refresh(cgroupID uint64, path string) (*event.Container, bool) {
	c, generic := r.build(path)
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.entries[cgroupID]; ok {
		if e := el.Value.(*entry); e.path == path {
			e.c, e.generic = c, generic
			if next := r.retryAt(c); next.IsZero() {
				e.retryAt = next
			}
		}
	}
	return c, generic
}

// retryAt is when c should be enriched again: zero when it is complete.
func (r *Resolver) retryAt(c *event.Container) time.Time {
	if comp, ok := r.enricher.(Completer); ok && !comp.Complete(c) {
		return time.Now().Add(r.retryEvery)
	}
	return time.Time{}
}

// Forget drops a cgroup from the cache, for instance when the sensor sees
// it removed.
func (r *Resolver) Forget(cgroupID uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.entries[cgroupID]; ok {
		r.lru.Remove(el)
		delete(r.entries, cgroupID)
	}
}

// Len returns the number of cached cgroups.
func (r *Resolver) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lru.Len()
}

func (r *Resolver) build(path string) (*event.Container, bool) {
	c, generic := parse(path)
	if r.enricher != nil {
		r.enricher.Enrich(&c)
	}
	return &c, generic
}
