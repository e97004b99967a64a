package simulate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// The simulation's network. Every address lives only inside the
// simulation's own network namespaces (victim and attacker, linked by one
// veth pair): nothing is added to the host's namespace and no packet can
// leave the host.
const (
	subnetCIDR = "10.77.0.0/24"
	victimIP   = "10.77.0.10"
	attackerIP = "10.77.0.20"
	// apiServiceIP plays the Kubernetes API service (KUBERNETES_SERVICE_HOST).
	apiServiceIP = "10.77.0.1"
	// imdsIP is the cloud metadata service, answered by the attacker's stub.
	imdsIP = "169.254.169.254"
	// tiIP is the threat-intelligence test address (TEST-NET-2), listed in
	// rules/threatintel.yaml; tiDomain resolves to it at the stub DNS.
	tiIP     = "198.51.100.77"
	tiDomain = "c2.vigil-simulation.test"
	// webPort is the victim's web server; controlPort the attacker's
	// command relay that the vigil CLI talks to.
	webPort     = 8080
	controlPort = 9009
)

// netnsDir is where `ip netns` keeps named network namespaces.
const netnsDir = "/run/netns"

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// ipCmd runs the ip(8) tool.
func ipCmd(ctx context.Context, ipBin string, args ...string) error {
	out, err := exec.CommandContext(ctx, ipBin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", ipBin, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// simNetwork is the pair of namespaces and the veth between them.
type simNetwork struct {
	ipBin            string
	victim, attacker string // namespace names under /run/netns
}

func (n *simNetwork) victimPath() string   { return filepath.Join(netnsDir, n.victim) }
func (n *simNetwork) attackerPath() string { return filepath.Join(netnsDir, n.attacker) }

// setupNetwork creates both namespaces and links them. On error the caller
// still calls remove, which deletes whatever exists.
func setupNetwork(ctx context.Context, ipBin, prefix string) (*simNetwork, error) {
	n := &simNetwork{ipBin: ipBin, victim: prefix + "-victim", attacker: prefix + "-attacker"}
	// Interface names are at most 15 bytes; the namespaces keep them apart.
	steps := [][]string{
		{"netns", "add", n.victim},
		{"netns", "add", n.attacker},
		{"-n", n.victim, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", n.attacker},
		{"-n", n.victim, "link", "set", "lo", "up"},
		{"-n", n.attacker, "link", "set", "lo", "up"},
		{"-n", n.victim, "addr", "add", victimIP + "/24", "dev", "eth0"},
		{"-n", n.attacker, "addr", "add", attackerIP + "/24", "dev", "eth0"},
		// The attacker's namespace also answers for the API service, the
		// metadata service and the threat-intel test address.
		{"-n", n.attacker, "addr", "add", apiServiceIP + "/32", "dev", "eth0"},
		{"-n", n.attacker, "addr", "add", imdsIP + "/32", "dev", "eth0"},
		{"-n", n.attacker, "addr", "add", tiIP + "/32", "dev", "eth0"},
		{"-n", n.victim, "link", "set", "eth0", "up"},
		{"-n", n.attacker, "link", "set", "eth0", "up"},
		// Everything the victim reaches goes to the attacker's namespace,
		// which has no route anywhere else.
		{"-n", n.victim, "route", "add", "default", "via", attackerIP, "dev", "eth0"},
	}
	for _, s := range steps {
		if err := ipCmd(ctx, ipBin, s...); err != nil {
			return n, fmt.Errorf("set up the simulation network: %w", err)
		}
	}
	return n, nil
}

// remove deletes both namespaces (and with them the veth pair).
func (n *simNetwork) remove() error {
	var errs []error
	for _, ns := range []string{n.victim, n.attacker} {
		if _, err := os.Stat(filepath.Join(netnsDir, ns)); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := ipCmd(context.Background(), n.ipBin, "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// dialInNetns opens a TCP connection from inside the network namespace at
// nsPath: the socket is created by a thread that temporarily joined it (a
// socket stays in the namespace it was created in).
func dialInNetns(ctx context.Context, nsPath, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked if it could not return to the host's
		// namespace: the runtime then discards it.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			ch <- result{err: fmt.Errorf("open this thread's network namespace: %w", err)}
			runtime.UnlockOSThread()
			return
		}
		defer orig.Close()
		target, err := os.Open(nsPath)
		if err != nil {
			ch <- result{err: fmt.Errorf("open network namespace %s: %w", nsPath, err)}
			runtime.UnlockOSThread()
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("enter network namespace %s: %w", nsPath, err)}
			runtime.UnlockOSThread()
			return
		}
		// The socket is created synchronously on this thread; connecting
		// continues in the host namespace's poller, which is fine.
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			if c != nil {
				c.Close()
			}
			ch <- result{err: fmt.Errorf("return to the host network namespace: %w", err)}
			return // thread stays locked and is thrown away
		}
		runtime.UnlockOSThread()
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}
