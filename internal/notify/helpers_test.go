package notify

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/store"
)

var t0 = time.Date(2026, 11, 25, 19, 47, 50, 30201715, time.UTC)

func sampleAlert(id, severity string) store.Alert {
	return store.Alert{
		Alert: alert.Alert{
			ID:          id,
			AlertType:   "vigil.node/DigitalCurrencyMining",
			DisplayName: "Digital currency mining related behavior detected",
			Description: "A process connected to a mining pool.",
			Severity:    severity,
			Status:      alert.StatusActive,
			StartTime:   t0.Add(-time.Minute),
			EndTime:     t0,
			Count:       2,
			Tactics:     []string{"Execution", "CommandAndControl"},
			Techniques:  []string{"T1496"},
			Entities: alert.Entities{
				Node:      "node-1",
				Namespace: "web",
				Pod:       "shop-7d9f",
				Container: &event.Container{ID: "0123456789abcdef0123", Name: "php", Image: "registry.local:5000/shop/php:8.3"},
				Process:   &alert.Process{Path: "/tmp/xmrig", CommandLine: "xmrig -o pool.example:3333 --user \"x]y\"", PID: 4242, UID: 33, User: "www-data"},
				Parent:    &alert.Process{Path: "/bin/sh", CommandLine: "sh -c ./xmrig"},
				Network:   &alert.Network{IP: "203.0.113.9", Port: 3333, Domain: "pool.example"},
			},
		},
		Cluster:    store.ClusterRef{Subscription: "sub1", ResourceGroup: "rg1", Name: "prod"},
		IngestedAt: t0.Add(time.Second),
	}
}

const sampleClusterID = "/subscriptions/sub1/resourceGroups/rg1/providers/Vigil.Kubernetes/connectedClusters/prod"

// rfc5424 is a parsed RFC 5424 message.
type rfc5424 struct {
	pri                        int
	version                    string
	timestamp                  time.Time
	hostname, app, procid, msg string
	msgid                      string
	sd                         map[string]map[string]string // SD-ID → params
}

// parse5424 parses one message strictly enough to catch format mistakes.
func parse5424(t *testing.T, s string) rfc5424 {
	t.Helper()
	var m rfc5424
	if !strings.HasPrefix(s, "<") {
		t.Fatalf("no PRI: %q", s)
	}
	end := strings.IndexByte(s, '>')
	pri, err := strconv.Atoi(s[1:end])
	if err != nil || end > 4 {
		t.Fatalf("bad PRI in %q", s)
	}
	m.pri = pri
	rest := s[end+1:]
	fields := strings.SplitN(rest, " ", 7)
	if len(fields) != 7 {
		t.Fatalf("header has %d fields: %q", len(fields), s)
	}
	m.version = fields[0]
	m.timestamp, err = time.Parse(time.RFC3339Nano, fields[1])
	if err != nil {
		t.Fatalf("bad TIMESTAMP %q: %v", fields[1], err)
	}
	m.hostname, m.app, m.procid, m.msgid = fields[2], fields[3], fields[4], fields[5]
	for _, f := range fields[2:6] {
		for _, r := range f {
			if r < 33 || r > 126 {
				t.Fatalf("header field %q has a non-printable character", f)
			}
		}
	}
	if len(m.msgid) > 32 {
		t.Fatalf("MSGID %q longer than 32", m.msgid)
	}
	sd := fields[6]
	m.sd = map[string]map[string]string{}
	if strings.HasPrefix(sd, "- ") || sd == "-" {
		m.msg = strings.TrimPrefix(strings.TrimPrefix(sd, "-"), " ")
		return m
	}
	i := 0
	for i < len(sd) && sd[i] == '[' {
		i++
		j := i
		for j < len(sd) && sd[j] != ' ' && sd[j] != ']' {
			j++
		}
		id := sd[i:j]
		params := map[string]string{}
		m.sd[id] = params
		i = j
		for i < len(sd) && sd[i] == ' ' {
			i++
			eq := strings.IndexByte(sd[i:], '=')
			name := sd[i : i+eq]
			i += eq + 1
			if sd[i] != '"' {
				t.Fatalf("SD param %s not quoted in %q", name, s)
			}
			i++
			var v strings.Builder
			for sd[i] != '"' {
				if sd[i] == '\\' {
					i++
				} else if sd[i] == ']' {
					t.Fatalf("unescaped ] in SD value of %s: %q", name, s)
				}
				v.WriteByte(sd[i])
				i++
			}
			i++
			params[name] = v.String()
		}
		if sd[i] != ']' {
			t.Fatalf("SD element not closed at %d: %q", i, s)
		}
		i++
	}
	m.msg = strings.TrimPrefix(sd[i:], " ")
	return m
}

// udpReceiver is a syslog receiver on 127.0.0.1:0 over UDP.
func udpReceiver(t *testing.T) (string, <-chan string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	out := make(chan string, 100)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			out <- string(buf[:n])
		}
	}()
	return pc.LocalAddr().String(), out
}

// streamReceiver accepts connections on ln and parses octet-counted
// frames (RFC 6587). With closeAfter > 0 it closes each connection after
// that many frames.
func streamReceiver(t *testing.T, ln net.Listener, closeAfter int) <-chan string {
	t.Helper()
	t.Cleanup(func() { ln.Close() })
	out := make(chan string, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for n := 0; closeAfter == 0 || n < closeAfter; n++ {
					lenStr, err := r.ReadString(' ')
					if err != nil {
						return
					}
					size, err := strconv.Atoi(strings.TrimSuffix(lenStr, " "))
					if err != nil {
						out <- "BAD FRAME LENGTH " + lenStr
						return
					}
					frame := make([]byte, size)
					if _, err := io.ReadFull(r, frame); err != nil {
						out <- "SHORT FRAME"
						return
					}
					out <- string(frame)
				}
			}()
		}
	}()
	return out
}

func receive(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("receiver got nothing within 5s")
		return ""
	}
}
