// Command sidebyside measures the overhead of `vigil sensor` side by side:
// it alternates rounds of the bench/storm workloads without the sensor and
// with it (in four configurations), in one run, and prints per-benchmark
// rate ratios as median [min–max] together with the sensor's drops, CPU and
// memory. It must run as root, from the vigil repository:
//
//	go run ./bench/cmd/sidebyside          # full run, about 5–6 minutes
//	go run ./bench/cmd/sidebyside -quick   # smoke run, about 1 minute
//
// The work is done by package bench/sidebyside, which bench/cmd/suite also
// uses. See docs/benchmarks.md for what each number means.
package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/vigil-sec/vigil/bench/sidebyside"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, log)
	stop()
	if err != nil {
		log.Error("benchmark failed", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger) error {
	o, err := sidebyside.ParseOptions(os.Args[1:], os.Stderr)
	if err != nil {
		return err
	}
	_, err = sidebyside.Run(ctx, log, o, os.Stdout)
	return err
}
