// Package loopback gives tests a TCP listener on a loopback address that
// accepts every connection, for sensor tests that need something to
// connect to.
package loopback

import (
	"io"
	"net"
	"testing"
)

// Serve listens on an ephemeral TCP port of host (e.g. "127.0.0.1", "::1")
// and accepts connections until the test ends. Each accepted connection is
// closed at once, or with drain after the peer closed its side (what a
// client that writes, such as nc, needs to finish cleanly).
func Serve(tb testing.TB, host string, drain bool) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		tb.Fatalf("listen on %s: %v", host, err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if drain {
				_, _ = io.Copy(io.Discard, c)
			}
			c.Close()
		}
	}()
	return ln
}

// Port is the listener's port.
func Port(ln net.Listener) int {
	return ln.Addr().(*net.TCPAddr).Port
}
