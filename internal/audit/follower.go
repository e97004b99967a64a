package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// FollowerConfig configures a Follower.
type FollowerConfig struct {
	// Path is the audit log the API server writes (--audit-log-path).
	Path string
	// StateFile keeps the position across restarts ("" keeps none: every
	// start reads the file from its beginning, or its end with FromEnd).
	StateFile string
	// FromEnd starts at the end of the file when there is no saved position
	// (skipping history); default: the beginning.
	FromEnd bool
	// MaxLine bounds the memory one line may take (default 4 MiB); longer
	// lines are skipped and counted.
	MaxLine int
	// Poll is how often the end of the file is checked for new lines and
	// for rotation (default 250 ms).
	Poll    time.Duration
	Metrics *Metrics
	Logger  *slog.Logger
}

// Follower reads an audit log line by line as it grows, like tail -F: it
// follows the file across rotation by rename (finishing the renamed file
// first) and by truncation (copytruncate), and saves its position (file
// identity and offset) after every batch of lines, so a restart resumes
// where it stopped. Lines are handed on at least once: after a crash,
// lines handled after the last save are handed on again (alert IDs are
// stable, so the hub stores them once).
type Follower struct {
	cfg FollowerConfig
	log *slog.Logger
	m   *Metrics

	cur     *logFile
	chunk   []byte
	pending []byte
	discard bool // skipping the rest of an oversize line
}

// logFile is an open file and the position of the first byte not yet
// handed on as part of a complete line.
type logFile struct {
	f    *os.File
	dev  uint64
	ino  uint64
	off  int64 // next byte to read
	line int64 // start of the pending (incomplete) line: the committed position
}

// followState is the state file's content.
type followState struct {
	Path   string `json:"path"`
	Dev    uint64 `json:"dev"`
	Inode  uint64 `json:"inode"`
	Offset int64  `json:"offset"`
}

// NewFollower checks cfg.
func NewFollower(cfg FollowerConfig) (*Follower, error) {
	if cfg.Path == "" {
		return nil, errors.New("audit log follower: no path; pass the file the API server writes (--audit-log-path)")
	}
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = 4 << 20
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Follower{cfg: cfg, log: cfg.Logger, m: cfg.Metrics, chunk: make([]byte, 64<<10)}, nil
}

// Run hands every complete line (without its newline) to handle until ctx
// ends; handle must not retain the slice. It waits for the file to appear.
// It returns nil when ctx ends, after saving the position.
func (f *Follower) Run(ctx context.Context, handle func(line []byte)) error {
	defer func() {
		if f.cur != nil {
			_ = f.cur.f.Close()
		}
	}()
	if err := f.resume(handle); err != nil {
		return err
	}
	waiting := false
	t := time.NewTicker(f.cfg.Poll)
	defer t.Stop()
	for {
		if f.cur == nil {
			lf, err := f.open(false)
			switch {
			case err == nil:
				f.cur = lf
				waiting = false
			case errors.Is(err, os.ErrNotExist):
				if !waiting {
					f.log.Warn("audit log does not exist yet; waiting for the API server to write it", "path", f.cfg.Path)
					waiting = true
				}
			default:
				return err
			}
		}
		if f.cur != nil {
			progressed, err := f.drain(handle)
			if err != nil {
				return err
			}
			if progressed {
				f.save()
			}
			if !progressed {
				if err := f.checkRotation(handle); err != nil {
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			f.save()
			return nil
		case <-t.C:
		}
	}
}

// resume opens the file at the saved position. If the saved file was
// rotated away while vigil was down, the rest of it is read first (found
// by its identity in the same directory).
func (f *Follower) resume(handle func([]byte)) error {
	st, ok := f.loadState()
	if !ok {
		lf, err := f.open(f.cfg.FromEnd)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		f.cur = lf
		return nil
	}
	lf, err := f.open(false)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if lf != nil && lf.dev == st.Dev && lf.ino == st.Inode {
		size, err := fileSize(lf.f)
		if err != nil {
			return err
		}
		if size >= st.Offset {
			lf.off, lf.line = st.Offset, st.Offset
		} else {
			f.m.Reopened.WithLabelValues("truncate").Inc()
			f.log.Warn("audit log is shorter than the saved position (truncated while stopped); reading it from the start", "path", f.cfg.Path, "saved", st.Offset, "size", size)
		}
		f.cur = lf
		return nil
	}
	// The file changed while stopped: finish the old one if it is still there.
	old := f.findRotated(st)
	if old == nil {
		f.log.Warn("the audit log file of the saved position is gone (rotated and removed while stopped); lines written to it after the saved position are lost, reading the current file from its start",
			"path", f.cfg.Path, "state", f.cfg.StateFile)
	} else {
		f.log.Info("audit log was rotated while stopped; reading the rest of the rotated file first", "rotated", old.f.Name(), "offset", st.Offset)
		f.cur = old
		if _, err := f.drain(handle); err != nil {
			_ = old.f.Close()
			return err
		}
		f.flushPending(handle)
		_ = old.f.Close()
		f.m.Reopened.WithLabelValues("rename").Inc()
	}
	f.cur = lf
	f.save()
	return nil
}

// findRotated looks for the saved file (same device and inode) in the
// log's directory and opens it at the saved offset.
func (f *Follower) findRotated(st followState) *logFile {
	dir := filepath.Dir(f.cfg.Path)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		if s, ok := fi.Sys().(*syscall.Stat_t); ok && uint64(s.Dev) == st.Dev && s.Ino == st.Inode {
			if fi.Size() < st.Offset {
				return nil
			}
			fh, err := os.Open(p)
			if err != nil {
				return nil
			}
			return &logFile{f: fh, dev: st.Dev, ino: st.Inode, off: st.Offset, line: st.Offset}
		}
	}
	return nil
}

func (f *Follower) open(atEnd bool) (*logFile, error) {
	fh, err := os.Open(f.cfg.Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("open audit log %s: %w (vigil needs read access to the API server's --audit-log-path; mount it read-only into the pod)", f.cfg.Path, err)
	}
	fi, err := fh.Stat()
	if err != nil {
		_ = fh.Close()
		return nil, fmt.Errorf("stat audit log %s: %w", f.cfg.Path, err)
	}
	if !fi.Mode().IsRegular() {
		_ = fh.Close()
		return nil, fmt.Errorf("audit log %s is not a regular file: point --log at the file the API server writes (--audit-log-path)", f.cfg.Path)
	}
	lf := &logFile{f: fh}
	if s, ok := fi.Sys().(*syscall.Stat_t); ok {
		lf.dev, lf.ino = uint64(s.Dev), s.Ino
	}
	if atEnd {
		lf.off, lf.line = fi.Size(), fi.Size()
	}
	f.pending, f.discard = f.pending[:0], false
	return lf, nil
}

// drain reads the current file to its end, handing on complete lines.
func (f *Follower) drain(handle func([]byte)) (bool, error) {
	lf := f.cur
	progressed := false
	for {
		n, err := lf.f.ReadAt(f.chunk, lf.off)
		if n > 0 {
			f.consume(f.chunk[:n], handle)
			lf.off += int64(n)
			progressed = true
		}
		if err == io.EOF || (err == nil && n == 0) {
			return progressed, nil
		}
		if err != nil {
			return progressed, fmt.Errorf("read audit log %s: %w", lf.f.Name(), err)
		}
	}
}

// consume splits b (the bytes at cur.off) into lines.
func (f *Follower) consume(b []byte, handle func([]byte)) {
	lf := f.cur
	base := lf.off
	start := 0
	for {
		i := bytes.IndexByte(b[start:], '\n')
		if i < 0 {
			break
		}
		end := start + i
		switch {
		case f.discard:
			f.discard = false
		case len(f.pending) > 0:
			if len(f.pending)+(end-start) > f.cfg.MaxLine {
				f.oversize(base + int64(end))
			} else {
				f.pending = append(f.pending, b[start:end]...)
				f.handle(f.pending, handle)
			}
		case end-start > f.cfg.MaxLine:
			f.oversize(base + int64(end))
		default:
			f.handle(b[start:end], handle)
		}
		f.pending = f.pending[:0]
		start = end + 1
		lf.line = base + int64(start)
	}
	rest := b[start:]
	if f.discard || len(rest) == 0 {
		return
	}
	if len(f.pending)+len(rest) > f.cfg.MaxLine {
		f.discard = true
		f.pending = f.pending[:0]
		f.oversize(base + int64(len(b)))
		return
	}
	f.pending = append(f.pending, rest...)
}

func (f *Follower) handle(line []byte, handle func([]byte)) {
	line = bytes.TrimSuffix(line, []byte{'\r'})
	if len(bytes.TrimSpace(line)) == 0 {
		return
	}
	handle(line)
}

func (f *Follower) oversize(at int64) {
	f.m.skip(SkipOversize, 1)
	f.log.Warn("skipping an audit log line longer than the limit", "path", f.cur.f.Name(), "near_offset", at, "max_bytes", f.cfg.MaxLine)
}

// flushPending hands on an unterminated last line of a file that will not
// grow any more (rotated away).
func (f *Follower) flushPending(handle func([]byte)) {
	if len(f.pending) > 0 && !f.discard {
		f.handle(f.pending, handle)
	}
	f.pending, f.discard = f.pending[:0], false
}

// checkRotation, at the end of the current file, notices that the path
// now names another file (rotation by rename) or that the file shrank
// (truncation) and starts over.
func (f *Follower) checkRotation(handle func([]byte)) error {
	lf := f.cur
	fi, err := os.Stat(f.cfg.Path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // renamed, the new file is not there yet: keep the old one
		}
		return fmt.Errorf("stat audit log %s: %w", f.cfg.Path, err)
	}
	s, ok := fi.Sys().(*syscall.Stat_t)
	if ok && (uint64(s.Dev) != lf.dev || s.Ino != lf.ino) {
		// Finish the renamed file (lines written just before the rename).
		if _, err := f.drain(handle); err != nil {
			return err
		}
		f.flushPending(handle)
		_ = lf.f.Close()
		f.cur = nil
		nf, err := f.open(false)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		f.cur = nf
		f.m.Reopened.WithLabelValues("rename").Inc()
		f.log.Info("audit log rotated; following the new file", "path", f.cfg.Path)
		f.save()
		return nil
	}
	if fi.Size() < lf.off {
		lf.off, lf.line = 0, 0
		f.pending, f.discard = f.pending[:0], false
		f.m.Reopened.WithLabelValues("truncate").Inc()
		f.log.Info("audit log truncated; reading it from the start", "path", f.cfg.Path)
		f.save()
	}
	return nil
}

func (f *Follower) loadState() (followState, bool) {
	var st followState
	if f.cfg.StateFile == "" {
		return st, false
	}
	b, err := os.ReadFile(f.cfg.StateFile)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			f.log.Warn("cannot read the audit log position; starting without it", "state", f.cfg.StateFile, "err", err)
		}
		return st, false
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Path != f.cfg.Path {
		f.log.Warn("ignoring an audit log position saved for another file or in a bad format", "state", f.cfg.StateFile, "err", err)
		return st, false
	}
	return st, true
}

// save writes the committed position atomically (temp file + rename).
func (f *Follower) save() {
	if f.cfg.StateFile == "" || f.cur == nil {
		return
	}
	st := followState{Path: f.cfg.Path, Dev: f.cur.dev, Inode: f.cur.ino, Offset: f.cur.line}
	b, _ := json.Marshal(st)
	tmp := f.cfg.StateFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		f.log.Error("saving the audit log position failed; a restart may read lines again", "state", f.cfg.StateFile, "err", err)
		return
	}
	if err := os.Rename(tmp, f.cfg.StateFile); err != nil {
		f.log.Error("saving the audit log position failed; a restart may read lines again", "state", f.cfg.StateFile, "err", err)
	}
}

func fileSize(fh *os.File) (int64, error) {
	fi, err := fh.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat audit log %s: %w", fh.Name(), err)
	}
	return fi.Size(), nil
}
