package sidebyside

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

const (
	healthTimeout = 60 * time.Second
	// settle lets the sensor finish its start-up snapshot before measuring.
	settle       = time.Second
	drainTimeout = 5 * time.Second
	drainPoll    = 150 * time.Millisecond
	stopTimeout  = 15 * time.Second
)

// Sensor is one sensor process the runner started: `vigil-sensor` (the
// binary the sensor DaemonSet runs) or `vigil sensor`.
type Sensor struct {
	log     *slog.Logger
	cmd     *exec.Cmd
	PID     int // the sensor process
	addr    string
	logPath string
	events  string
	http    *http.Client
	exited  chan struct{}
	waitErr error
}

// SensorArgs is the command line that runs the sensor binary bin with
// flags: vigil-sensor takes them directly, vigil after its sensor command.
func SensorArgs(bin string, flags ...string) []string {
	if strings.HasPrefix(filepath.Base(bin), "vigil-sensor") {
		return flags
	}
	return append([]string{"sensor"}, flags...)
}

// StartSensor starts the sensor binary vigil (see SensorArgs) on eBPF with
// metrics on a free loopback port and waits until it is healthy.
func StartSensor(ctx context.Context, log *slog.Logger, vigil, work, ringSize string, withEvents bool, extra []string) (*Sensor, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	tag := fmt.Sprintf("sensor-%d", time.Now().UnixNano())
	s := &Sensor{
		log:     log,
		addr:    addr,
		logPath: filepath.Join(work, tag+".log"),
		events:  filepath.Join(work, tag+".jsonl"),
		http:    &http.Client{Timeout: 5 * time.Second},
		exited:  make(chan struct{}),
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, fmt.Errorf("creating the sensor log: %w", err)
	}
	defer logf.Close() // the child holds its own copy
	args := SensorArgs(vigil, "--source", "ebpf", "--metrics-addr", addr, "--ring-size", ringSize)
	if withEvents {
		args = append(args, "--events-out", s.events)
	}
	args = append(args, extra...)
	s.cmd = exec.Command(vigil, args...)
	s.cmd.Stdout = logf
	s.cmd.Stderr = logf
	// If the runner dies, the sensor must not outlive it.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", vigil, err)
	}
	s.PID = s.cmd.Process.Pid
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	log.Info("sensor starting", "pid", s.PID, "binary", vigil, "args", strings.Join(args, " "))
	if err := s.waitHealthy(ctx); err != nil {
		_ = s.Stop() // err already says why, with the sensor's log
		return nil, err
	}
	if err := sleep(ctx, settle); err != nil {
		_ = s.Stop()
		return nil, err
	}
	return s, nil
}

func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free loopback port for the sensor's metrics: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("releasing the metrics port: %w", err)
	}
	return addr, nil
}

// waitHealthy waits for /healthz to answer 200 and checks that the sensor
// really runs on eBPF (a proc-connector fallback would measure nothing).
func (s *Sensor) waitHealthy(ctx context.Context) error {
	deadline := time.Now().Add(healthTimeout)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("the sensor exited before it was healthy (%v); its log:\n%s", s.waitErr, s.LogTail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the sensor's /healthz did not answer 200 within %v; its log:\n%s", healthTimeout, s.LogTail())
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr+"/healthz", nil)
		if err != nil {
			return err
		}
		if resp, err := s.http.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				m, err := Scrape(ctx, s.http, s.addr)
				if err != nil {
					return err
				}
				if m[MetricEBPF] != 1 {
					return fmt.Errorf("the sensor is healthy but %s is not 1: it is not running on eBPF", MetricEBPF)
				}
				return nil
			}
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// SensorState is a reading of the sensor's metrics and CPU time.
type SensorState struct {
	Metrics Metrics
	CPU     time.Duration
}

func (s *Sensor) State(ctx context.Context) (SensorState, error) {
	cpu, err := ProcessCPU(s.PID)
	if err != nil {
		return SensorState{}, err
	}
	m, err := Scrape(ctx, s.http, s.addr)
	if err != nil {
		return SensorState{}, err
	}
	for _, k := range []string{MetricDrops, MetricKernelRecords, MetricDelivered} {
		if _, ok := m[k]; !ok {
			return SensorState{}, fmt.Errorf("the sensor's /metrics has no %s", k)
		}
	}
	return SensorState{Metrics: m, CPU: cpu}, nil
}

// drained waits until the sensor has read everything the kernel produced
// (delivered + drops caught up with kernel records), so the CPU and drops
// of a storm include its backlog. Other processes on the machine keep
// producing records, so "caught up" is checked at each poll, not waited
// for to become still.
func (s *Sensor) Drained(ctx context.Context) (SensorState, error) {
	deadline := time.Now().Add(drainTimeout)
	for {
		if err := sleep(ctx, drainPoll); err != nil {
			return SensorState{}, err
		}
		cur, err := s.State(ctx)
		if err != nil {
			return cur, err
		}
		m := cur.Metrics
		if m[MetricDelivered]+m[MetricDrops] >= m[MetricKernelRecords] || time.Now().After(deadline) {
			return cur, nil
		}
	}
}

// delta is what the sensor spent and lost between two readings; CPU is
// relative to the storm's wall time.
func (b SensorState) Delta(a SensorState, wall time.Duration) *SensorDelta {
	d := func(k string) float64 { return a.Metrics[k] - b.Metrics[k] }
	return &SensorDelta{
		CPUPercent:    100 * (a.CPU - b.CPU).Seconds() / wall.Seconds(),
		Drops:         d(MetricDrops),
		KernelRecords: d(MetricKernelRecords),
		Delivered:     d(MetricDelivered),
		ExecEvents:    d(MetricExecEvents),
	}
}

// stop ends the sensor with SIGTERM (SIGKILL after stopTimeout) and removes
// its event file.
func (s *Sensor) Stop() error {
	defer os.Remove(s.events)
	select {
	case <-s.exited:
		return fmt.Errorf("the sensor (pid %d) exited on its own during the round (%v); its log:\n%s", s.PID, s.waitErr, s.LogTail())
	default:
		if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("stopping the sensor (pid %d): %w", s.PID, err)
		}
		select {
		case <-s.exited:
		case <-time.After(stopTimeout):
			_ = s.cmd.Process.Kill()
			<-s.exited
			return fmt.Errorf("the sensor (pid %d) ignored SIGTERM for %v and was killed; its log:\n%s", s.PID, stopTimeout, s.LogTail())
		}
	}
	if s.waitErr != nil {
		s.log.Warn("the sensor exited with an error after SIGTERM", "pid", s.PID, "err", s.waitErr, "log", s.LogTail())
	}
	return nil
}

func (s *Sensor) LogTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", s.logPath, err)
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

func NumCPU() int { return runtime.NumCPU() }
