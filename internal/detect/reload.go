package detect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long Watch waits after the last file change
// before reloading (editors write files in several steps).
const DefaultDebounce = 300 * time.Millisecond

// Reloader holds the current Engine and replaces it on Reload. A reload
// that fails (a file does not parse or a rule does not compile) keeps the
// last good engine and returns the error.
type Reloader struct {
	load     func() (*RuleSet, error)
	opts     []Option
	log      *slog.Logger
	cur      atomic.Pointer[Engine]
	mu       sync.Mutex // serialises reloads
	debounce time.Duration
	onReload func(*Engine)
}

// ReloaderOption configures a Reloader.
type ReloaderOption func(*Reloader)

// WithCompileOptions passes options to every Compile.
func WithCompileOptions(opts ...Option) ReloaderOption {
	return func(r *Reloader) { r.opts = append(r.opts, opts...) }
}

// WithDebounce sets the quiet period Watch waits for before reloading.
func WithDebounce(d time.Duration) ReloaderOption { return func(r *Reloader) { r.debounce = d } }

// OnReload registers a function called with each newly installed engine.
func OnReload(f func(*Engine)) ReloaderOption { return func(r *Reloader) { r.onReload = f } }

// NewReloader loads and compiles the rules once. It fails if that first
// load fails: there is no previous engine to keep.
func NewReloader(load func() (*RuleSet, error), log *slog.Logger, opts ...ReloaderOption) (*Reloader, error) {
	if log == nil {
		log = slog.Default()
	}
	r := &Reloader{load: load, log: log, debounce: DefaultDebounce}
	for _, o := range opts {
		o(r)
	}
	e, err := r.build()
	if err != nil {
		return nil, fmt.Errorf("load detection rules: %w", err)
	}
	r.cur.Store(e)
	return r, nil
}

// Engine returns the current engine (never nil).
func (r *Reloader) Engine() *Engine { return r.cur.Load() }

func (r *Reloader) build() (*Engine, error) {
	rs, err := r.load()
	if err != nil {
		return nil, err
	}
	opts := append([]Option{WithLogger(r.log)}, r.opts...)
	return Compile(rs, opts...)
}

// Reload loads and compiles the rules again and installs the new engine.
// On any error the current engine stays in place and the error (with
// file:line:column of each problem) is returned.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, err := r.build()
	if err != nil {
		r.log.Error("rule reload failed; keeping the previous rules", "err", err)
		return fmt.Errorf("reload detection rules (previous rules stay active): %w", err)
	}
	r.cur.Store(e)
	r.log.Info("detection rules reloaded", "rules", len(e.all), "enabled", e.Enabled())
	if r.onReload != nil {
		r.onReload(e)
	}
	return nil
}

// HandleSIGHUP reloads on every SIGHUP until ctx is done. It blocks.
func (r *Reloader) HandleSIGHUP(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			r.log.Info("SIGHUP: reloading detection rules")
			_ = r.Reload() // logged by Reload
		}
	}
}

// Watch reloads when a rule file (*.yaml, *.yml) in one of paths changes.
// paths are directories or files (a file's directory is watched, and only
// that file's changes count). Changes are debounced. It blocks until ctx is
// done and returns nil then, or an error if watching cannot start.
func (r *Reloader) Watch(ctx context.Context, paths ...string) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch rule files: %w", err)
	}
	defer w.Close()
	files := map[string]bool{} // explicitly named files
	dirs := map[string]bool{}  // directories whose rule files count
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil {
			return fmt.Errorf("watch rule path %s: %w", p, err)
		}
		st, err := os.Stat(abs)
		if err != nil {
			return fmt.Errorf("watch rule path: %w (create it or remove it from the rule paths)", err)
		}
		dir := abs
		if !st.IsDir() {
			files[abs] = true
			dir = filepath.Dir(abs)
		} else {
			dirs[abs] = true
		}
		if err := w.Add(dir); err != nil {
			return fmt.Errorf("watch rule directory %s: %w", dir, err)
		}
	}
	relevant := func(name string) bool {
		abs, err := filepath.Abs(name)
		if err != nil {
			return false
		}
		if files[abs] {
			return true
		}
		ext := filepath.Ext(abs)
		return dirs[filepath.Dir(abs)] && (ext == ".yaml" || ext == ".yml")
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("rule file watcher closed")
			}
			if ev.Op == fsnotify.Chmod || !relevant(ev.Name) {
				continue
			}
			timer.Reset(r.debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("rule file watcher closed")
			}
			r.log.Warn("rule file watcher error", "err", err)
		case <-timer.C:
			r.log.Info("rule files changed: reloading detection rules")
			_ = r.Reload() // logged by Reload
		}
	}
}
