package sensorcmd

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/output"
)

// ParseSize accepts a byte count with an optional binary suffix
// (K/KiB, M/MiB, G/GiB): "4MiB", "512k", "4194304".
func ParseSize(s string) (int, error) {
	t := strings.TrimSpace(strings.ToLower(s))
	mult := 1
	for _, suf := range []struct {
		s string
		m int
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}} {
		if strings.HasSuffix(t, suf.s) {
			t, mult = strings.TrimSuffix(t, suf.s), suf.m
			break
		}
	}
	n, err := strconv.Atoi(strings.TrimSpace(t))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size: use bytes or a K/M/G (KiB/MiB/GiB) suffix, e.g. 4MiB", s)
	}
	return n * mult, nil
}

// OpenOut opens an output destination: "-" is stdout (never closed by the
// writers), anything else a file opened for appending. The returned
// function closes it.
func OpenOut(stdout io.Writer, dest string) (io.Writer, func(), error) {
	if dest == "-" {
		return struct{ io.Writer }{stdout}, func() {}, nil
	}
	file, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, err
	}
	return file, func() { _ = file.Close() }, nil
}

// RegisterLogFlags adds --log-level and --log-format (vigil's global flags,
// the vigil-sensor binary's own) bound to level and format.
func RegisterLogFlags(fl *pflag.FlagSet, level, format *string) {
	fl.StringVar(level, "log-level", "info", "log level: debug, info, warn, error")
	fl.StringVar(format, "log-format", "text", "log format on stderr: text or json")
}

// NewLogger returns the logger --log-level and --log-format ask for,
// writing to stderr.
func NewLogger(stderr io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(stderr, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: use text or json", format)
	}
}

// OpenEvents opens --events-out dest as a JSON-lines event output; the
// returned function flushes and closes it (a failure is logged).
func OpenEvents(stdout io.Writer, dest string, log *slog.Logger) (*output.JSONL, func(), error) {
	w, closeFn, err := OpenOut(stdout, dest)
	if err != nil {
		return nil, nil, fmt.Errorf("--events-out: %w", err)
	}
	out := output.NewJSONL(w)
	return out, func() {
		if err := out.Close(); err != nil {
			log.Error("closing event output", "err", err)
		}
		closeFn()
	}, nil
}

// OpenAlerts opens --alerts-out dest as a JSON-lines alert output; the
// returned function flushes and closes it (a failure is logged).
func OpenAlerts(stdout io.Writer, dest string, log *slog.Logger) (*alert.Writer, func(), error) {
	w, closeFn, err := OpenOut(stdout, dest)
	if err != nil {
		return nil, nil, fmt.Errorf("--alerts-out: %w", err)
	}
	aw := alert.NewWriter(w)
	return aw, func() {
		if err := aw.Close(); err != nil {
			log.Error("closing alert output", "err", err)
		}
		closeFn()
	}, nil
}
