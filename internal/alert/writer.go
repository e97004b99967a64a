package alert

import (
	"bytes"
	"encoding/json"
	"io"
	"sync"

	"github.com/vigil-sec/vigil/internal/output"
)

// FlushEvery bounds how long a written alert may sit in a Writer's buffer.
const FlushEvery = output.FlushEvery

// Writer writes alerts as JSON lines: one alert object per line, the
// schema in docs/alerts.md. It is safe for concurrent use; buffering,
// flushing and error semantics are output.Lines': a destination error is
// sticky, an alert that cannot be encoded is refused alone.
type Writer struct {
	l   *output.Lines
	mu  sync.Mutex // guards buf and enc
	buf bytes.Buffer
	enc *json.Encoder
}

// NewWriter writes to w; if w is an io.Closer, Close closes it.
func NewWriter(w io.Writer) *Writer {
	aw := &Writer{l: output.NewLines(w, 64<<10, "alert")}
	aw.enc = json.NewEncoder(&aw.buf)
	// Command lines and paths stay readable: no \u003c for '<' and '&'.
	aw.enc.SetEscapeHTML(false)
	return aw
}

// Write encodes al as one line.
func (aw *Writer) Write(al *Alert) error {
	return aw.l.Write(func(dst []byte) ([]byte, error) {
		aw.mu.Lock()
		defer aw.mu.Unlock()
		aw.buf.Reset()
		if err := aw.enc.Encode(al); err != nil {
			return dst, err
		}
		// Encode appended a newline; Lines adds its own.
		return append(dst, bytes.TrimSuffix(aw.buf.Bytes(), []byte{'\n'})...), nil
	})
}

// Lines reports how many alerts were written.
func (aw *Writer) Lines() uint64 { return aw.l.Count() }

// Close flushes and closes the destination; later Writes fail and later
// Closes return nil.
func (aw *Writer) Close() error { return aw.l.Close() }
