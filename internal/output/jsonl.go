// Package output writes events to their destinations. JSONL is the
// debugging and test interface: one JSON object per line, the schema in
// docs/events.md.
package output

import (
	"io"

	"github.com/vigil-sec/vigil/internal/event"
)

// JSONL writes one event per line (see Lines for buffering, flushing and
// error semantics). It is safe for concurrent use.
type JSONL struct {
	l   *Lines
	enc Encoder // used under l's lock
}

// NewJSONL writes to w; if w is an io.Closer it is closed by Close.
func NewJSONL(w io.Writer) *JSONL { return &JSONL{l: NewLines(w, 256<<10, "event")} }

// Write encodes ev as one line, with an Encoder (what json.Encoder with
// SetEscapeHTML(false) writes).
func (j *JSONL) Write(ev *event.Event) error {
	return j.l.Write(func(dst []byte) ([]byte, error) { return j.enc.AppendEvent(dst, ev) })
}

// Lines reports how many events were written.
func (j *JSONL) Lines() uint64 { return j.l.Count() }

// Close flushes and closes the destination.
func (j *JSONL) Close() error { return j.l.Close() }
