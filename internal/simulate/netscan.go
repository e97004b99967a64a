package simulate

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// maxScanTargets bounds the stand-in scanner (hosts x ports).
const maxScanTargets = 4096

// NetScan is the harmless built-in stand-in for a network scanner: one
// process making a burst of TCP connection attempts to every host of cidr
// on each of ports (and to every port from 1 to 200 of the extra hosts),
// which is what a connect scan looks like to the sensor. It refuses
// ranges outside the private, loopback and documentation networks so it
// can never scan anything real, and prints the open ports it found.
func NetScan(ctx context.Context, w io.Writer, cidr, ports string, extraHosts ...string) error {
	pfx, err := netip.ParsePrefix(cidr)
	if err != nil {
		return fmt.Errorf("scan range %q: %w; give a CIDR such as 10.77.0.0/24", cidr, err)
	}
	if !scannable(pfx.Addr()) {
		return fmt.Errorf("scan range %s: the stand-in scanner only scans private (10/8, 172.16/12, 192.168/16), loopback or documentation networks", cidr)
	}
	var portList []int
	for _, p := range strings.Split(ports, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %q: give ports as a comma-separated list of numbers, e.g. 443,6443", p)
		}
		portList = append(portList, n)
	}
	if hostBits := pfx.Addr().BitLen() - pfx.Bits(); hostBits > 16 || (1<<hostBits)*len(portList)+200*len(extraHosts) > maxScanTargets {
		return fmt.Errorf("scan of %s on %d port(s): the stand-in scanner makes at most %d attempts; give a smaller range", cidr, len(portList), maxScanTargets)
	}
	// The extra hosts' ports first: they answer at once (open or reset),
	// while absent hosts of the range only time out.
	var targets []string
	for _, h := range extraHosts {
		a, err := netip.ParseAddr(h)
		if err != nil || !scannable(a) {
			return fmt.Errorf("host %q: give a private or loopback IP address", h)
		}
		for p := 1; p <= 200; p++ {
			targets = append(targets, net.JoinHostPort(a.String(), strconv.Itoa(p)))
		}
	}
	for a := pfx.Masked().Addr(); pfx.Contains(a); a = a.Next() {
		for _, p := range portList {
			targets = append(targets, net.JoinHostPort(a.String(), strconv.Itoa(p)))
		}
	}
	if len(targets) > maxScanTargets {
		return fmt.Errorf("%d targets: the stand-in scanner makes at most %d attempts; give a smaller range", len(targets), maxScanTargets)
	}
	var (
		mu   sync.Mutex
		open []string
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, 256)
	d := net.Dialer{Timeout: 500 * time.Millisecond}
	for _, t := range targets {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := d.DialContext(ctx, "tcp", t)
			if err == nil {
				c.Close()
				mu.Lock()
				open = append(open, t)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Fprintf(w, "scanned %d targets, open: %s\n", len(targets), strings.Join(open, " "))
	return ctx.Err()
}

func scannable(a netip.Addr) bool {
	doc := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("203.0.113.0/24")}
	for _, p := range doc {
		if p.Contains(a) {
			return true
		}
	}
	return a.IsPrivate() || a.IsLoopback()
}
