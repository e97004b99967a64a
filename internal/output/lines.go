package output

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// FlushEvery bounds how long a written line may sit in the buffer.
const FlushEvery = 100 * time.Millisecond

// maxKeptLine bounds the line buffer kept between writes, so one huge
// record does not pin its memory.
const maxKeptLine = 64 << 10

// Lines is a buffered writer of newline-terminated records (JSON lines),
// shared by the event and alert outputs. It is safe for concurrent use.
// Output is flushed at least every FlushEvery and on Close, so a reader
// tailing the stream sees records promptly without a write(2) per record.
// The first error writing to the destination is sticky and returned by
// every later call, so a broken destination is never silent; a record that
// cannot be encoded is refused alone.
type Lines struct {
	what   string // "event", "alert": names the record in errors
	mu     sync.Mutex
	w      *bufio.Writer
	buf    []byte // one encoded line, reused
	closer io.Closer
	err    error
	closed bool
	lines  uint64
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

// NewLines writes to w through a buffer of size bytes; if w is an
// io.Closer, Close closes it.
func NewLines(w io.Writer, size int, what string) *Lines {
	l := &Lines{what: what, w: bufio.NewWriterSize(w, size), stop: make(chan struct{}), done: make(chan struct{})}
	if c, ok := w.(io.Closer); ok {
		l.closer = c
	}
	go l.flusher()
	return l
}

func (l *Lines) flusher() {
	defer close(l.done)
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.mu.Lock()
			if l.err == nil && l.w.Buffered() > 0 {
				if err := l.w.Flush(); err != nil {
					l.err = fmt.Errorf("write %s: %w", l.what, err)
				}
			}
			l.mu.Unlock()
		}
	}
}

// Write appends one record with encode (which appends its encoding to dst
// and returns it) and a newline.
func (l *Lines) Write(encode func(dst []byte) ([]byte, error)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	b, err := encode(l.buf[:0])
	if err != nil {
		return fmt.Errorf("encode %s: %w", l.what, err)
	}
	b = append(b, '\n')
	if cap(b) <= maxKeptLine {
		l.buf = b
	}
	if _, err := l.w.Write(b); err != nil {
		l.err = fmt.Errorf("write %s: %w", l.what, err)
		return l.err
	}
	l.lines++
	return nil
}

// Count reports how many records were written.
func (l *Lines) Count() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lines
}

// Close flushes and closes the destination; later Writes fail and later
// Closes return nil.
func (l *Lines) Close() error {
	l.once.Do(func() { close(l.stop) })
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.err == nil {
		if err := l.w.Flush(); err != nil {
			l.err = fmt.Errorf("flush %ss: %w", l.what, err)
		}
	}
	err := l.err
	if l.closer != nil {
		if cerr := l.closer.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close %s output: %w", l.what, cerr)
		}
	}
	if l.err == nil {
		l.err = errors.New("write " + l.what + ": writer is closed")
	}
	return err
}
