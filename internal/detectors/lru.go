package detectors

// lru is a bounded map with least-recently-touched eviction and a
// time-to-live. It is not safe for concurrent use. Nodes of removed entries
// are kept on a free list (at most cap of them exist), so a table in steady
// state inserts without allocating.
type lru[K comparable, V any] struct {
	m        map[K]*lnode[K, V]
	root     lnode[K, V] // sentinel: root.next is the most recently touched
	free     *lnode[K, V]
	cap      int
	ttl      int64 // ns; 0 = no expiry
	onRemove func(k K, v *V)

	evictions   uint64 // removed because the table was full
	expirations uint64 // removed because their TTL passed
}

type lnode[K comparable, V any] struct {
	prev, next *lnode[K, V]
	key        K
	touched    int64 // ns
	val        V
}

// newLRU makes a table of at most capacity entries whose entries expire
// ttlNS after they were last touched. onRemove, if set, sees every entry
// that leaves the table (evicted, expired or removed) before it is reused.
func newLRU[K comparable, V any](capacity int, ttlNS int64, onRemove func(K, *V)) *lru[K, V] {
	if capacity < 1 {
		capacity = 1
	}
	l := &lru[K, V]{m: make(map[K]*lnode[K, V]), cap: capacity, ttl: ttlNS, onRemove: onRemove}
	l.root.next, l.root.prev = &l.root, &l.root
	return l
}

func (l *lru[K, V]) len() int { return len(l.m) }

// peek returns the entry for k without touching it; a nil pointer when absent
// or expired at now.
func (l *lru[K, V]) peek(k K, now int64) (*V, int64) {
	n := l.m[k]
	if n == nil || l.expired(n, now) {
		return nil, 0
	}
	return &n.val, n.touched
}

// upsert returns the entry for k, creating a zero one when absent (evicting
// the least recently touched entry if the table is full), and marks it
// touched at now.
func (l *lru[K, V]) upsert(k K, now int64) (v *V, created bool) {
	n := l.m[k]
	if n != nil && l.expired(n, now) {
		l.removeNode(n)
		l.expirations++
		n = nil
	}
	if n == nil {
		if len(l.m) >= l.cap {
			l.removeNode(l.root.prev)
			l.evictions++
		}
		n = l.free
		if n != nil {
			l.free = n.next
			n.next = nil
		} else {
			n = new(lnode[K, V])
		}
		n.key = k
		l.m[k] = n
		created = true
	} else {
		n.prev.next, n.next.prev = n.next, n.prev
	}
	n.touched = now
	n.prev, n.next = &l.root, l.root.next
	l.root.next.prev = n
	l.root.next = n
	return &n.val, created
}

// remove deletes k if present.
func (l *lru[K, V]) remove(k K) bool {
	n := l.m[k]
	if n == nil {
		return false
	}
	l.removeNode(n)
	return true
}

// expire removes up to budget entries whose TTL passed at now, oldest first.
// Called with a small budget on every update, it keeps the table free of
// stale entries at O(1) amortised cost.
func (l *lru[K, V]) expire(now int64, budget int) {
	for ; budget > 0; budget-- {
		n := l.root.prev
		if n == &l.root || !l.expired(n, now) {
			return
		}
		l.removeNode(n)
		l.expirations++
	}
}

func (l *lru[K, V]) expired(n *lnode[K, V], now int64) bool {
	return l.ttl > 0 && now-n.touched > l.ttl
}

func (l *lru[K, V]) removeNode(n *lnode[K, V]) {
	if l.onRemove != nil {
		l.onRemove(n.key, &n.val)
	}
	delete(l.m, n.key)
	n.prev.next, n.next.prev = n.next, n.prev
	var zk K
	var zv V
	n.key, n.val, n.prev = zk, zv, nil
	n.next = l.free
	l.free = n
}
