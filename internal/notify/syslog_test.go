package notify

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/pki"
	"github.com/vigil-sec/vigil/internal/store"
)

func buildSyslog(t *testing.T, cfg map[string]string) Notifier {
	t.Helper()
	n, _, err := Build(store.Output{Name: "siem", Type: "syslog", Config: cfg, Enabled: true}, Options{Hostname: "hub-1"})
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := n.(interface{ Close() error }); ok {
		t.Cleanup(func() { c.Close() })
	}
	return n
}

func TestSyslogOverUDPSendsAnRFC5424Message(t *testing.T) {
	addr, got := udpReceiver(t)
	n := buildSyslog(t, map[string]string{"address": addr, "network": "udp", "facility": "local3"})
	a := sampleAlert("a1", "High")
	if err := n.Notify(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	m := parse5424(t, receive(t, got))
	if m.pri != 19*8+2 {
		t.Errorf("PRI = %d, want local3.crit = %d", m.pri, 19*8+2)
	}
	if m.version != "1" || m.hostname != "hub-1" || m.app != "vigil" || m.msgid != "vigil.node/DigitalCurrencyMining" {
		t.Errorf("header = %+v", m)
	}
	if !m.timestamp.Equal(t0.Truncate(time.Microsecond)) {
		t.Errorf("timestamp %v, want the alert's end time %v", m.timestamp, t0)
	}
	sd := m.sd[SDID]
	want := map[string]string{"alertId": "a1", "severity": "High", "cluster": sampleClusterID,
		"alertType": "vigil.node/DigitalCurrencyMining", "pod": "shop-7d9f", "namespace": "web", "count": "2"}
	for k, v := range want {
		if sd[k] != v {
			t.Errorf("SD %s = %q, want %q", k, sd[k], v)
		}
	}
	for _, s := range []string{"Digital currency mining related behavior detected", "pod=shop-7d9f", "image=registry.local:5000/shop/php:8.3", "process=/tmp/xmrig", "remote=203.0.113.9:3333"} {
		if !strings.Contains(m.msg, s) {
			t.Errorf("MSG %q lacks %q", m.msg, s)
		}
	}
}

func TestSyslogSeverityFollowsTheAlertSeverity(t *testing.T) {
	cases := []struct {
		severity string
		want     int // syslog severity
	}{
		{"High", 2}, {"Medium", 4}, {"Low", 5}, {"Informational", 6}, {"bogus", 6},
	}
	for _, tc := range cases {
		t.Run(tc.severity, func(t *testing.T) {
			m := parse5424(t, FormatRFC5424(sampleAlert("x", tc.severity), 16, "h"))
			if m.pri != 16*8+tc.want {
				t.Fatalf("PRI = %d, want %d", m.pri, 16*8+tc.want)
			}
		})
	}
}

func TestSyslogFieldsStayValidWhateverTheAlertHolds(t *testing.T) {
	a := sampleAlert(`id"with]quote\`, "Low")
	a.AlertType = "vigil.node/AVeryLongAlertTypeNameThatExceedsThirtyTwoCharacters"
	a.DisplayName = "multi\nline"
	a.Entities.Pod = `p]o"d`
	m := parse5424(t, FormatRFC5424(a, 4, "host with space"))
	if m.msgid != "vigil.node/AVeryLongAlertTypeNam" {
		t.Errorf("MSGID %q", m.msgid)
	}
	if m.hostname != "host_with_space" {
		t.Errorf("HOSTNAME %q", m.hostname)
	}
	sd := m.sd[SDID]
	if sd["alertId"] != `id"with]quote\` || sd["pod"] != `p]o"d` || sd["alertType"] != a.AlertType {
		t.Errorf("SD did not round-trip: %v", sd)
	}
	if strings.Contains(m.msg, "\n") {
		t.Errorf("MSG has a line break: %q", m.msg)
	}
}

func TestSyslogOverTCPUsesOctetCountingFrames(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := streamReceiver(t, ln, 0)
	n := buildSyslog(t, map[string]string{"address": ln.Addr().String(), "network": "tcp"})
	for _, id := range []string{"first", "second"} {
		if err := n.Notify(context.Background(), sampleAlert(id, "Medium")); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"first", "second"} {
		m := parse5424(t, receive(t, got))
		if m.sd[SDID]["alertId"] != id {
			t.Fatalf("got alert %q, want %q", m.sd[SDID]["alertId"], id)
		}
		if m.pri != 16*8+4 {
			t.Fatalf("PRI %d, want default facility local0 with warning", m.pri)
		}
	}
}

func TestSyslogReconnectsWhenTheReceiverDropsTheConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := streamReceiver(t, ln, 1) // closes every connection after one message
	n := buildSyslog(t, map[string]string{"address": ln.Addr().String(), "network": "tcp"})
	for i, id := range []string{"a", "b", "c"} {
		if err := n.Notify(context.Background(), sampleAlert(id, "High")); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		m := parse5424(t, receive(t, got))
		if m.sd[SDID]["alertId"] != id {
			t.Fatalf("got %q, want %q", m.sd[SDID]["alertId"], id)
		}
		time.Sleep(20 * time.Millisecond) // let the receiver's close arrive
	}
}

func TestSyslogReportsAnUnreachableReceiver(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	n := buildSyslog(t, map[string]string{"address": addr, "network": "tcp", "timeout": "1s"})
	err = n.Notify(context.Background(), sampleAlert("a", "High"))
	if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "siem") {
		t.Fatalf("err = %v, want it to name the output and %s", err, addr)
	}
}

func TestSyslogOverTLSTrustsTheConfiguredCA(t *testing.T) {
	dir := t.TempDir()
	b, err := pki.EnsureServer(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", b.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	got := streamReceiver(t, ln, 0)
	caFile := filepath.Join(dir, pki.CACertFile)
	n := buildSyslog(t, map[string]string{"address": ln.Addr().String(), "network": "tls", "caFile": caFile})
	// Two messages: the second reuses the connection (after the liveness
	// check, which must cope with TLS 1.3 session tickets).
	for _, id := range []string{"tls-1", "tls-1b"} {
		if err := n.Notify(context.Background(), sampleAlert(id, "High")); err != nil {
			t.Fatal(err)
		}
		if m := parse5424(t, receive(t, got)); m.sd[SDID]["alertId"] != id {
			t.Fatalf("got %v, want %s", m.sd, id)
		}
	}

	// Trusting another CA, the same receiver is refused.
	otherDir := t.TempDir()
	if _, err := pki.EnsureServer(otherDir, nil); err != nil {
		t.Fatal(err)
	}
	wrong := buildSyslog(t, map[string]string{"address": ln.Addr().String(), "network": "tls", "caFile": filepath.Join(otherDir, pki.CACertFile)})
	if err := wrong.Notify(context.Background(), sampleAlert("tls-2", "High")); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("err = %v, want a certificate error", err)
	}
}
