package alert

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

type syncBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	closed bool
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestWriterEmitsOneJSONObjectPerLine(t *testing.T) {
	var buf syncBuffer
	w := NewWriter(&buf)
	ev := baseEvent(event.KindConnect)
	ev.Network = &event.Network{DstIP: "127.0.0.1", DstPort: 3333}
	ev.Process.Args = []string{"sh", "-c", "echo <a&b>\nsecond line"}
	for i := 1; i <= 3; i++ {
		al := fromMatch("vigil.node/X", "Name", "desc", SeverityHigh, "stable", []string{"Execution"}, []string{"T1496"}, []string{"step"}, ev, testBoot)
		al.Count = i
		if err := w.Write(al); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if !buf.closed {
		t.Error("Close did not close the destination")
	}
	sc := bufio.NewScanner(strings.NewReader(buf.String()))
	n := 0
	for sc.Scan() {
		n++
		var got Alert
		if err := json.Unmarshal(sc.Bytes(), &got); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", n, err, sc.Text())
		}
		if got.Count != n || got.AlertType != "vigil.node/X" || got.Entities.Network.Port != 3333 || got.Entities.Process.Path != "/bin/sh" {
			t.Fatalf("line %d decoded to %+v", n, got)
		}
		var raw map[string]any
		if err := json.Unmarshal(sc.Bytes(), &raw); err != nil {
			t.Fatal(err)
		}
		ents := raw["entities"].(map[string]any)
		if _, ok := ents["Event"]; ok {
			t.Fatal("the triggering event is serialised")
		}
		if _, ok := ents["parentProcess"].(map[string]any)["startTime"]; !ok {
			t.Fatal("a known parent start time is missing")
		}
	}
	if n != 3 || w.Lines() != 3 {
		t.Fatalf("%d lines, Lines()=%d, want 3", n, w.Lines())
	}
	if strings.Contains(buf.String(), `\u003c`) {
		t.Fatal("HTML escaping makes command lines unreadable")
	}
	if !strings.Contains(buf.String(), `$'echo <a&b>\\nsecond line'`) {
		t.Fatalf("command line not quoted as expected:\n%s", buf.String())
	}
}

func TestWriterOmitsUnknownParentStartTime(t *testing.T) {
	var buf syncBuffer
	w := NewWriter(&buf)
	ev := baseEvent(event.KindExec)
	ev.Parent.StartTime = 0
	if err := w.Write(fromMatch("r", "n", "d", SeverityLow, "stable", nil, nil, nil, ev, testBoot)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "0001-01-01") {
		t.Fatalf("an unknown start time is written as the zero time:\n%s", buf.String())
	}
}

func TestWriterFlushesWithoutClose(t *testing.T) {
	var buf syncBuffer
	w := NewWriter(&buf)
	defer w.Close()
	if err := w.Write(mk("r", "c1", "/x", testTime)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.HasSuffix(buf.String(), "}\n") {
		if time.Now().After(deadline) {
			t.Fatal("a written alert was not flushed to the destination within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriterErrorsAreSticky(t *testing.T) {
	w := NewWriter(failWriter{})
	big := mk("r", "c1", "/x", testTime)
	big.Description = strings.Repeat("x", 128<<10) // larger than the buffer: written through
	if err := w.Write(big); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("write error = %v, want the destination's error", err)
	}
	if err := w.Write(mk("r", "c1", "/x", testTime)); err == nil {
		t.Fatal("a later write succeeded on a broken destination")
	}
	if err := w.Close(); err == nil {
		t.Fatal("Close hid the destination error")
	}
	if err := w.Close(); err != nil {
		t.Fatalf("a second Close = %v, want nil", err)
	}
}

func TestWriterRefusesWritesAfterClose(t *testing.T) {
	var buf syncBuffer
	w := NewWriter(&buf)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(mk("r", "c1", "/x", testTime)); err == nil {
		t.Fatal("write after Close succeeded")
	}
}
