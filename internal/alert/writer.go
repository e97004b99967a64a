package alert

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// FlushEvery bounds how long a written alert may sit in a Writer's buffer.
const FlushEvery = 100 * time.Millisecond

// Writer writes alerts as JSON lines: one alert object per line, the
// schema in docs/alerts.md. It is safe for concurrent use. Output is
// buffered and flushed at least every FlushEvery and on Close.
type Writer struct {
	mu     sync.Mutex
	w      *bufio.Writer
	buf    bytes.Buffer
	enc    *json.Encoder
	closer io.Closer
	err    error
	lines  uint64
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	closed bool
}

// NewWriter writes to w; if w is an io.Closer, Close closes it.
func NewWriter(w io.Writer) *Writer {
	aw := &Writer{w: bufio.NewWriterSize(w, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	aw.enc = json.NewEncoder(&aw.buf)
	// Command lines and paths stay readable: no \u003c for '<' and '&'.
	aw.enc.SetEscapeHTML(false)
	if c, ok := w.(io.Closer); ok {
		aw.closer = c
	}
	go aw.flusher()
	return aw
}

func (aw *Writer) flusher() {
	defer close(aw.done)
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-aw.stop:
			return
		case <-t.C:
			aw.mu.Lock()
			if aw.err == nil && aw.w.Buffered() > 0 {
				if err := aw.w.Flush(); err != nil {
					aw.err = fmt.Errorf("write alert: %w", err)
				}
			}
			aw.mu.Unlock()
		}
	}
}

// Write encodes al as one line. The first error writing to the destination
// is sticky and returned by every later call, so a broken destination is
// never silent; an alert that cannot be encoded is refused alone.
func (aw *Writer) Write(al *Alert) error {
	aw.mu.Lock()
	defer aw.mu.Unlock()
	if aw.err != nil {
		return aw.err
	}
	aw.buf.Reset()
	if err := aw.enc.Encode(al); err != nil { // Encode appends the '\n'
		return fmt.Errorf("encode alert %s: %w", al.ID, err)
	}
	if _, err := aw.w.Write(aw.buf.Bytes()); err != nil {
		aw.err = fmt.Errorf("write alert: %w", err)
		return aw.err
	}
	if aw.buf.Cap() > 1<<20 {
		aw.buf = bytes.Buffer{} // do not pin one huge alert's memory
		aw.enc = json.NewEncoder(&aw.buf)
		aw.enc.SetEscapeHTML(false)
	}
	aw.lines++
	return nil
}

// Lines reports how many alerts were written.
func (aw *Writer) Lines() uint64 {
	aw.mu.Lock()
	defer aw.mu.Unlock()
	return aw.lines
}

// Close flushes and closes the destination; later Writes fail and later
// Closes return nil.
func (aw *Writer) Close() error {
	aw.once.Do(func() { close(aw.stop) })
	<-aw.done
	aw.mu.Lock()
	defer aw.mu.Unlock()
	if aw.closed {
		return nil
	}
	aw.closed = true
	if aw.err == nil {
		if err := aw.w.Flush(); err != nil {
			aw.err = fmt.Errorf("flush alerts: %w", err)
		}
	}
	err := aw.err
	if aw.closer != nil {
		if cerr := aw.closer.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close alert output: %w", cerr)
		}
	}
	if aw.err == nil {
		aw.err = errors.New("write alert: writer is closed")
	}
	return err
}
