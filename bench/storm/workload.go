package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Spec bounds one workload run: it stops at Duration or after MaxOps
// operations, whichever comes first, so a run can never go on forever.
type Spec struct {
	Workload string
	Duration time.Duration
	MaxOps   uint64 // 0: the workload's default cap
	Workers  int    // 0: one per CPU
	// ExecPath is the program the exec storm runs (default /bin/true); it
	// must exit 0 for an op to count.
	ExecPath string
}

// Result is what a run prints as one JSON object.
type Result struct {
	Workload string  `json:"workload"`
	Workers  int     `json:"workers"`
	Ops      uint64  `json:"ops"`
	Seconds  float64 `json:"seconds"`
	Rate     float64 `json:"rate_per_sec"`
	// Bytes is the payload moved by the read workload (Ops × read size).
	Bytes uint64 `json:"bytes,omitempty"`
	// CPUSeconds is the user+system CPU this process and its children
	// used during the run: less sensitive than Rate to other load on a
	// shared machine, and it includes in-kernel hook costs.
	CPUSeconds float64 `json:"cpu_seconds"`
	// Accepted is how many connections the connect storm's listener
	// accepted; it equals Ops when every connect reached the server.
	Accepted uint64 `json:"accepted,omitempty"`
	// Capped is true when MaxOps, not Duration, ended the run.
	Capped bool `json:"capped"`
}

// Default operation caps: far above what this machine reaches in a minute,
// so they bound a runaway run without shaping a normal one.
var defaultMaxOps = map[string]uint64{
	"exec":    2_000_000,
	"connect": 5_000_000,
	"getppid": 5_000_000_000,
	"read":    2_000_000_000,
}

// Workloads lists the workload names in documentation order.
var Workloads = []string{"exec", "connect", "getppid", "read"}

const (
	maxDuration = 10 * time.Minute
	// checkEvery is how many cheap syscalls a worker does between looks at
	// the clock and the op budget.
	checkEvery = 256
	readSize   = 64
	// DefaultExecPath is what the exec storm runs unless Spec.ExecPath is set.
	DefaultExecPath = "/bin/true"
)

// opFunc performs up to n operations and returns how many succeeded.
type opFunc func(n uint64) (uint64, error)

// Run executes the workload described by s and reports its count and rate.
func Run(ctx context.Context, s Spec) (Result, error) {
	caps, ok := defaultMaxOps[s.Workload]
	if !ok {
		return Result{}, fmt.Errorf("unknown workload %q: use one of %v", s.Workload, Workloads)
	}
	if s.Duration <= 0 || s.Duration > maxDuration {
		return Result{}, fmt.Errorf("duration %v: must be > 0 and <= %v", s.Duration, maxDuration)
	}
	if s.MaxOps == 0 {
		s.MaxOps = caps
	}
	if s.Workers <= 0 {
		s.Workers = runtime.NumCPU()
	}
	if s.ExecPath == "" {
		s.ExecPath = DefaultExecPath
	}

	var (
		batch   uint64 = checkEvery
		newOp   func() (opFunc, func() error, error)
		cleanup = func() error { return nil }
		srv     *acceptor
	)
	switch s.Workload {
	case "exec":
		batch = 1
		devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return Result{}, fmt.Errorf("opening %s for the children's stdio: %w", os.DevNull, err)
		}
		cleanup = devnull.Close
		newOp = func() (opFunc, func() error, error) {
			return execOp(s.ExecPath, devnull.Fd()), nil, nil
		}
	case "connect":
		batch = 1
		var err error
		srv, err = startAcceptor()
		if err != nil {
			return Result{}, err
		}
		cleanup = srv.close
		newOp = func() (opFunc, func() error, error) {
			return connectOp(srv.addr), nil, nil
		}
	case "getppid":
		newOp = func() (opFunc, func() error, error) { return getppidOp, nil, nil }
	case "read":
		newOp = func() (opFunc, func() error, error) {
			f, err := os.Open("/dev/zero")
			if err != nil {
				return nil, nil, fmt.Errorf("opening /dev/zero: %w", err)
			}
			return readOp(int(f.Fd())), f.Close, nil
		}
	}

	ctx, cancel := context.WithTimeout(ctx, s.Duration)
	defer cancel()

	var (
		total   atomic.Uint64
		budget  = int64(s.MaxOps)
		left    atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		runErr  error
	)
	left.Store(budget)
	fail := func(err error) {
		errOnce.Do(func() { runErr = err; cancel() })
	}
	ops := make([]opFunc, s.Workers)
	closers := make([]func() error, 0, s.Workers)
	for i := range ops {
		op, closer, err := newOp()
		if err != nil {
			for _, c := range closers {
				_ = c()
			}
			_ = cleanup()
			return Result{}, err
		}
		ops[i] = op
		if closer != nil {
			closers = append(closers, closer)
		}
	}

	cpuStart, err := cpuTime()
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	for _, op := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				// Claim a batch from the shared budget so the total never
				// exceeds MaxOps, even with several workers.
				n := int64(batch)
				after := left.Add(-n)
				if after < 0 {
					n += after
					if n <= 0 {
						cancel()
						return
					}
				}
				done, err := op(uint64(n))
				total.Add(done)
				if err != nil {
					fail(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpuEnd, err := cpuTime()
	if err != nil {
		return Result{}, err
	}

	var cerr error
	if srv != nil {
		// Let the listener drain its backlog so Accepted can be compared
		// with Ops; connects that were never accepted show as a shortfall.
		srv.waitAccepted(total.Load(), 2*time.Second)
	}
	for _, c := range closers {
		cerr = errors.Join(cerr, c())
	}
	cerr = errors.Join(cerr, cleanup())
	if runErr != nil {
		return Result{}, fmt.Errorf("%s workload: %w", s.Workload, runErr)
	}
	if cerr != nil {
		return Result{}, fmt.Errorf("%s workload: cleaning up: %w", s.Workload, cerr)
	}
	r := Result{
		Workload:   s.Workload,
		Workers:    s.Workers,
		Ops:        total.Load(),
		Seconds:    elapsed.Seconds(),
		CPUSeconds: (cpuEnd - cpuStart).Seconds(),
		Capped:     total.Load() >= s.MaxOps,
	}
	r.Rate = float64(r.Ops) / r.Seconds
	if s.Workload == "read" {
		r.Bytes = r.Ops * readSize
	}
	if srv != nil {
		r.Accepted = srv.accepted.Load()
	}
	return r, nil
}

// cpuTime is the user+system time of this process and its waited-for
// children so far.
func cpuTime() (time.Duration, error) {
	var total time.Duration
	for _, who := range []int{unix.RUSAGE_SELF, unix.RUSAGE_CHILDREN} {
		var ru unix.Rusage
		if err := unix.Getrusage(who, &ru); err != nil {
			return 0, fmt.Errorf("getrusage: %w", err)
		}
		total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return total, nil
}

// execOp forks and execs path with stdio on /dev/null and waits for it; an
// op counts only when the child exited with status 0.
func execOp(path string, devnull uintptr) opFunc {
	attr := &syscall.ProcAttr{
		Env:   []string{},
		Files: []uintptr{devnull, devnull, devnull},
	}
	argv := []string{filepath.Base(path)}
	return func(n uint64) (uint64, error) {
		var done uint64
		for ; done < n; done++ {
			pid, err := syscall.ForkExec(path, argv, attr)
			if err != nil {
				return done, fmt.Errorf("fork+exec %s: %w", path, err)
			}
			var ws syscall.WaitStatus
			for {
				_, err = syscall.Wait4(pid, &ws, 0, nil)
				if !errors.Is(err, syscall.EINTR) {
					break
				}
			}
			if err != nil {
				return done, fmt.Errorf("waiting for %s (pid %d): %w", path, pid, err)
			}
			if !ws.Exited() || ws.ExitStatus() != 0 {
				return done, fmt.Errorf("%s (pid %d) did not exit 0: wait status %#x", path, pid, uint32(ws))
			}
		}
		return done, nil
	}
}

// acceptor is the in-process 127.0.0.1 listener of the connect storm: it
// accepts and closes every connection and counts them.
type acceptor struct {
	ln       net.Listener
	addr     string
	accepted atomic.Uint64
	done     chan error
}

func startAcceptor() (*acceptor, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listening on 127.0.0.1 for the connect storm: %w", err)
	}
	a := &acceptor{ln: ln, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					err = nil
				}
				a.done <- err
				return
			}
			a.accepted.Add(1)
			_ = c.Close()
		}
	}()
	return a, nil
}

// waitAccepted waits until want connections were accepted or timeout passed.
func (a *acceptor) waitAccepted(want uint64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for a.accepted.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

func (a *acceptor) close() error {
	err := a.ln.Close()
	if aerr := <-a.done; aerr != nil {
		err = errors.Join(err, fmt.Errorf("accepting on %s: %w", a.addr, aerr))
	}
	return err
}

// connectOp opens a TCP connection to addr and closes it.
func connectOp(addr string) opFunc {
	d := net.Dialer{Timeout: 5 * time.Second}
	return func(n uint64) (uint64, error) {
		var done uint64
		for ; done < n; done++ {
			c, err := d.Dial("tcp4", addr)
			if err != nil {
				return done, fmt.Errorf("connecting to %s: %w", addr, err)
			}
			if err := c.Close(); err != nil {
				return done, fmt.Errorf("closing connection to %s: %w", addr, err)
			}
		}
		return done, nil
	}
}

func getppidOp(n uint64) (uint64, error) {
	for i := uint64(0); i < n; i++ {
		unix.Getppid()
	}
	return n, nil
}

// readOp reads readSize bytes from fd (an open /dev/zero) per op.
func readOp(fd int) opFunc {
	buf := make([]byte, readSize)
	return func(n uint64) (uint64, error) {
		for i := uint64(0); i < n; i++ {
			got, err := unix.Read(fd, buf)
			if err != nil {
				return i, fmt.Errorf("reading /dev/zero: %w", err)
			}
			if got != readSize {
				return i, fmt.Errorf("short read from /dev/zero: %d of %d bytes", got, readSize)
			}
		}
		return n, nil
	}
}
