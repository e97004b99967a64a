package outbox

import (
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/vigil-sec/vigil/internal/testenv"
)

// A disk that fills up under the outbox (a tiny tmpfs) is survived: appends
// fail with an error and are counted, nothing already queued is lost or
// damaged, and once acknowledged alerts free the space appends work again.
func TestADiskFullUnderTheOutboxIsCountedWithoutLosingWhatIsQueued(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mount a 64 KiB tmpfs: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	reg := prometheus.NewRegistry()
	// Limits far above the disk: the disk fills first.
	ob := open(t, dir, Options{SegmentBytes: 32 << 10, MaxBytes: 1 << 20, Registerer: reg})

	ok, failed := 0, 0
	for i := 0; i < 2000 && failed < 50; i++ {
		if err := ob.Append(testAlert(i)); err != nil {
			failed++
			continue
		}
		ok++
	}
	if failed == 0 {
		t.Fatalf("2000 appends into 64 KiB all succeeded: the disk never filled")
	}
	if err := ob.Sync(); err != nil {
		t.Logf("sync on a full disk: %v", err)
	}
	if got := metricValue(t, reg, "vigil_outbox_append_errors_total"); got < float64(failed) {
		t.Errorf("vigil_outbox_append_errors_total = %v, want at least the %d failed appends", got, failed)
	}
	queued := ids(t, ob)
	if len(queued) == 0 {
		t.Fatal("nothing queued survived the full disk")
	}
	for i, id := range queued {
		if want := testAlert(i).ID; id != want {
			t.Fatalf("queued[%d] = %s, want %s: alerts accepted before the disk filled must stay in order", i, id, want)
		}
	}
	t.Logf("%d appends accepted, %d refused with the disk full; %d queued", ok, failed, len(queued))

	// Acknowledging frees whole segments; then appends succeed again.
	recs, err := ob.Peek(len(queued))
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Ack(recs[len(recs)-1].Seq); err != nil {
		t.Fatalf("ack on a full disk: %v", err)
	}
	if err := ob.Append(testAlert(100000)); err != nil {
		entries, _ := os.ReadDir(dir)
		t.Fatalf("append after the queue was acknowledged: %v (files %v)", err, entries)
	}
}
