// Package output writes events to their destinations. JSONL is the
// debugging and test interface: one JSON object per line, the schema in
// docs/events.md.
package output

import (
	"bufio"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// JSONL writes one event per line. It is safe for concurrent use. Output is
// buffered and flushed at least every FlushEvery (and on Close), so a
// reader tailing the stream sees events promptly without a write(2) per event.
type JSONL struct {
	mu     sync.Mutex
	w      *bufio.Writer
	buf    []byte // one encoded line, reused
	closer io.Closer
	err    error
	stop   chan struct{}
	done   chan struct{}
	lines  uint64
}

// maxKeptLine bounds the line buffer a JSONL keeps between writes, so one
// huge event does not pin its memory.
const maxKeptLine = 64 << 10

// FlushEvery bounds how long a written event may sit in the buffer.
const FlushEvery = 100 * time.Millisecond

// NewJSONL writes to w; if w is an io.Closer it is closed by Close.
func NewJSONL(w io.Writer) *JSONL {
	bw := bufio.NewWriterSize(w, 256<<10)
	j := &JSONL{w: bw, stop: make(chan struct{}), done: make(chan struct{})}
	if c, ok := w.(io.Closer); ok {
		j.closer = c
	}
	go j.flusher()
	return j
}

func (j *JSONL) flusher() {
	defer close(j.done)
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
			j.mu.Lock()
			if j.err == nil && j.w.Buffered() > 0 {
				j.err = j.w.Flush()
			}
			j.mu.Unlock()
		}
	}
}

// Write encodes ev as one line. The first error writing to the
// destination is sticky and returned by every later call, so a broken
// destination is never silent; an event that cannot be encoded is refused
// alone.
func (j *JSONL) Write(ev *event.Event) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	// AppendEvent writes what json.Encoder with SetEscapeHTML(false) wrote.
	b, err := AppendEvent(j.buf[:0], ev)
	if err != nil {
		// One unencodable event does not break the destination: report it
		// and keep writing the others.
		return fmt.Errorf("encode event: %w", err)
	}
	b = append(b, '\n')
	if cap(b) <= maxKeptLine {
		j.buf = b
	}
	if _, err := j.w.Write(b); err != nil {
		j.err = fmt.Errorf("write event: %w", err)
		return j.err
	}
	j.lines++
	return nil
}

// Lines reports how many events were written.
func (j *JSONL) Lines() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.lines
}

// Close flushes and closes the destination.
func (j *JSONL) Close() error {
	close(j.stop)
	<-j.done
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err == nil {
		j.err = j.w.Flush()
	}
	err := j.err
	if j.closer != nil {
		if cerr := j.closer.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
