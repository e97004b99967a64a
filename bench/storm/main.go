// Command storm is the workload of vigil's overhead benchmarks: it runs one
// bounded syscall storm and prints its operation count and rate as one JSON
// object, so bench/cmd/sidebyside can compare rounds with and without the
// sensor precisely.
//
//	storm exec    -duration 3s   # fork+exec /bin/true, wait for it
//	storm connect -duration 3s   # TCP connect+accept+close on 127.0.0.1
//	storm getppid -duration 1s   # getppid(2) in a tight loop
//	storm read    -duration 1s   # 64-byte read(2)s of /dev/zero
//
// Every run stops by itself at -duration or after -max-ops operations.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "storm:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	usage := fmt.Sprintf("usage: storm %v [-duration D] [-max-ops N] [-workers N]", Workloads)
	if len(args) == 0 {
		return fmt.Errorf("no workload given; %s", usage)
	}
	s := Spec{Workload: args[0]}
	fs := flag.NewFlagSet("storm "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&s.Duration, "duration", 0, "how long to run (required, at most 10m)")
	fs.Uint64Var(&s.MaxOps, "max-ops", 0, "stop after this many operations (0: the workload's default cap)")
	fs.IntVar(&s.Workers, "workers", 0, "parallel workers (0: one per CPU)")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w; %s", err, usage)
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %v; %s", fs.Args(), usage)
	}
	r, err := Run(ctx, s)
	if err != nil {
		return err
	}
	if err := json.NewEncoder(stdout).Encode(r); err != nil {
		return fmt.Errorf("writing the result: %w", err)
	}
	return nil
}
