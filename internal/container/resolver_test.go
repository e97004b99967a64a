package container

import (
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// countingEnricher names containers after their id and counts calls.
type countingEnricher struct{ calls atomic.Int64 }

func (e *countingEnricher) Enrich(c *event.Container) {
	e.calls.Add(1)
	if !c.Host {
		c.Name = "name-" + c.ID
	}
}

func TestResolver(t *testing.T) {
	kubePath := "/kubepods/besteffort/pod" + podUID + "/" + ctrID

	t.Run("second lookup of a cgroup is served from the cache without enriching again", func(t *testing.T) {
		enr := &countingEnricher{}
		r := NewResolver(8, WithEnricher(enr))
		a := r.Resolve(42, kubePath)
		b := r.Resolve(42, kubePath)
		if a != b {
			t.Errorf("cache hit returned a different Container")
		}
		if got := enr.calls.Load(); got != 1 {
			t.Errorf("enricher called %d times, want 1", got)
		}
		want := event.Container{ID: ctrID, Runtime: RuntimeContainerd, PodUID: podUID, QOS: QOSBestEffort, Name: "name-" + ctrID}
		if !reflect.DeepEqual(*a, want) {
			t.Errorf("Resolve = %+v, want %+v", *a, want)
		}
	})

	t.Run("a known id resolves without its path", func(t *testing.T) {
		r := NewResolver(8)
		first := r.Resolve(7, "/docker/"+ctrID)
		if got := r.Resolve(7, ""); got != first {
			t.Errorf("Resolve(7, \"\") = %+v, want the cached %+v", got, first)
		}
	})

	t.Run("an unknown id without a path is unknown, not host", func(t *testing.T) {
		r := NewResolver(8)
		if got := r.Resolve(9, ""); got != nil {
			t.Errorf("Resolve(9, \"\") = %+v, want nil", got)
		}
	})

	t.Run("a reused id with a new path is resolved again", func(t *testing.T) {
		r := NewResolver(8)
		r.Resolve(5, "/vigil-test-old")
		got := r.Resolve(5, "/system.slice/ssh.service")
		if !got.Host {
			t.Errorf("Resolve after id reuse = %+v, want host", got)
		}
		if n := r.Len(); n != 1 {
			t.Errorf("cache holds %d entries, want 1", n)
		}
	})

	t.Run("id zero is parsed but never cached", func(t *testing.T) {
		r := NewResolver(8)
		got := r.Resolve(0, "/default/myctr")
		if got == nil || got.ID != "myctr" {
			t.Fatalf("Resolve(0, path) = %+v, want container myctr", got)
		}
		if n := r.Len(); n != 0 {
			t.Errorf("cache holds %d entries, want 0", n)
		}
	})

	t.Run("the cache is bounded and evicts the least recently used cgroup", func(t *testing.T) {
		enr := &countingEnricher{}
		r := NewResolver(3, WithEnricher(enr))
		for id := uint64(1); id <= 3; id++ {
			r.Resolve(id, fmt.Sprintf("/ctr-%d", id))
		}
		r.Resolve(1, "/ctr-1") // 1 becomes most recent; 2 is oldest
		r.Resolve(4, "/ctr-4") // evicts 2
		if n := r.Len(); n != 3 {
			t.Fatalf("cache holds %d entries, want 3", n)
		}
		before := enr.calls.Load()
		r.Resolve(1, "/ctr-1")
		r.Resolve(3, "/ctr-3")
		if got := enr.calls.Load() - before; got != 0 {
			t.Errorf("recently used cgroups were evicted: %d re-enrichments", got)
		}
		if got := r.Resolve(2, ""); got != nil {
			t.Errorf("least recently used cgroup still cached: %+v", got)
		}
	})

	t.Run("forget drops a removed cgroup", func(t *testing.T) {
		r := NewResolver(8)
		r.Resolve(11, "/vigil-test-x")
		r.Forget(11)
		if got := r.Resolve(11, ""); got != nil {
			t.Errorf("forgotten cgroup still resolves: %+v", got)
		}
	})

	t.Run("concurrent lookups agree and stay within the bound", func(t *testing.T) {
		r := NewResolver(64, WithEnricher(&countingEnricher{}))
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 2000 {
					id := uint64((i*7 + g) % 100)
					path := fmt.Sprintf("/kubepods/burstable/pod%s/ctr%d", podUID, id)
					c := r.Resolve(id+1, path)
					if c == nil || c.ID != fmt.Sprintf("ctr%d", id) || c.Name != "name-"+c.ID {
						t.Errorf("Resolve(%d) = %+v", id+1, c)
						return
					}
				}
			}()
		}
		wg.Wait()
		if n := r.Len(); n > 64 {
			t.Errorf("cache holds %d entries, bound is 64", n)
		}
	})
}

func BenchmarkResolveHit(b *testing.B) {
	r := NewResolver(1024)
	path := "/kubepods/burstable/pod" + podUID + "/" + ctrID
	r.Resolve(42, path)
	b.ReportAllocs()
	for b.Loop() {
		r.Resolve(42, path)
	}
}

func TestResolveProcessSettlesGenericCgroupsByMountNamespace(t *testing.T) {
	const hostNS, ctrNS = 4026531841, 4026532999
	kube := "/kubepods/besteffort/pod6f1c8a2e-1111-2222-3333-444455556666/" + strings.Repeat("ab", 32)
	cases := []struct {
		name     string
		path     string
		mntns    uint32
		wantHost bool
		wantID   string
	}{
		{"a sandbox cgroup holding host-namespace processes is the host", "/process_api/8a55530f82df49fb", hostNS, true, ""},
		{"a plain runc container with its own mount namespace is a container", "/vigil-test-1234", ctrNS, false, "vigil-test-1234"},
		{"a pod process that joined the host mount namespace stays the pod's", kube, hostNS, false, strings.Repeat("ab", 32)},
	}
	r := NewResolver(16, WithHostMountNS(hostNS))
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := r.ResolveProcess(uint64(100+i), c.path, c.mntns)
			if got.Host != c.wantHost || got.ID != c.wantID {
				t.Fatalf("ResolveProcess(%q, mntns %d) = %+v, want host=%v id=%q", c.path, c.mntns, got, c.wantHost, c.wantID)
			}
			// The cached entry must give the same answer a second time.
			again := r.ResolveProcess(uint64(100+i), c.path, c.mntns)
			if again.Host != got.Host || again.ID != got.ID {
				t.Fatalf("cached answer differs: %+v vs %+v", again, got)
			}
		})
	}
}

// lateEnricher knows a pod's name only from its third lookup on, like pod
// metadata that arrives after the container started.
type lateEnricher struct{ calls atomic.Int64 }

func (e *lateEnricher) Enrich(c *event.Container) {
	if e.calls.Add(1) >= 3 {
		c.Pod, c.Name = "web-0", "web"
	}
}

func (e *lateEnricher) Complete(c *event.Container) bool { return c.PodUID == "" || c.Pod != "" }

func TestAnAttributionWhoseMetadataArrivesLateIsEnrichedAgainUntilComplete(t *testing.T) {
	enr := &lateEnricher{}
	r := NewResolver(16, WithEnricher(enr), WithRetryInterval(10*time.Millisecond))
	path := "/kubepods/besteffort/pod" + podUID + "/" + ctrID
	first := r.Resolve(7, path)
	if first.Pod != "" {
		t.Fatalf("first lookup already has pod %q", first.Pod)
	}
	if again := r.Resolve(7, path); again != first || enr.calls.Load() != 1 {
		t.Fatalf("a lookup within the retry interval enriched again (%d calls)", enr.calls.Load())
	}
	var got *event.Container
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(15 * time.Millisecond) {
		if got = r.Resolve(7, path); got.Pod != "" {
			break
		}
	}
	if got.Pod != "web-0" || got.Name != "web" || got.ID != ctrID {
		t.Fatalf("after the metadata arrived: %+v, want pod web-0, container web", got)
	}
	if first.Pod != "" {
		t.Errorf("the Container published first was modified (%+v): published attributions are read-only", first)
	}
	calls := enr.calls.Load()
	time.Sleep(30 * time.Millisecond)
	r.Resolve(7, path)
	if enr.calls.Load() != calls {
		t.Errorf("a complete attribution was enriched again")
	}
}
