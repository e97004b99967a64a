package output

import (
	"bufio"
	"encoding/json"
	"errors"
	"github.com/vigil-sec/vigil/internal/testutil/syncbuf"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

func TestEachEventIsOneParsableLine(t *testing.T) {
	var buf syncbuf.Buffer
	j := NewJSONL(&buf)
	for i := 1; i <= 3; i++ {
		if err := j.Write(&event.Event{Kind: event.KindExec, Process: event.Process{PID: i, Args: []string{"sh", "-c", "echo <a&b>"}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(buf.String()))
	n := 0
	for sc.Scan() {
		n++
		var ev event.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("line %d is not JSON: %v", n, err)
		}
		if ev.Process.PID != n || ev.Process.Args[2] != "echo <a&b>" {
			t.Fatalf("line %d = %+v", n, ev.Process)
		}
	}
	if n != 3 || j.Lines() != 3 {
		t.Fatalf("%d lines, Lines()=%d, want 3", n, j.Lines())
	}
	if strings.Contains(buf.String(), `\u003c`) {
		t.Fatal("HTML escaping makes command lines unreadable")
	}
}

func TestEventsReachTheDestinationWithoutClose(t *testing.T) {
	var buf syncbuf.Buffer
	j := NewJSONL(&buf)
	defer j.Close()
	if err := j.Write(&event.Event{Kind: event.KindExit}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * FlushEvery)
	for !strings.Contains(buf.String(), `"kind":"exit"`) {
		if time.Now().After(deadline) {
			t.Fatal("a buffered event was not flushed to a tailing reader")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestAWriteErrorIsReportedAndSticks(t *testing.T) {
	j := NewJSONL(failingWriter{})
	big := &event.Event{Kind: event.KindExec, Process: event.Process{Args: []string{strings.Repeat("x", 300<<10)}}}
	if err := j.Write(big); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("err = %v, want the destination's error", err)
	}
	if err := j.Write(&event.Event{Kind: event.KindExit}); err == nil {
		t.Fatal("a later write succeeded after the destination failed")
	}
	if err := j.Close(); err == nil {
		t.Fatal("Close hid the failure")
	}
}

func TestAnUnencodableEventIsRefusedAloneAndLaterEventsStillArrive(t *testing.T) {
	var buf syncbuf.Buffer
	j := NewJSONL(&buf)
	if err := j.Write(&event.Event{Kind: event.KindExec, Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Fatal("an event with an unrepresentable time was accepted")
	}
	if err := j.Write(&event.Event{Kind: event.KindExit}); err != nil {
		t.Fatalf("the destination was marked broken by one bad event: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"kind":"exit"`) || strings.Contains(buf.String(), `"kind":"exec"`) {
		t.Fatalf("output = %q", buf.String())
	}
}
