package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWorkloadsCountWhatTheyDid(t *testing.T) {
	t.Run("exec storm counts exactly the children that ran", func(t *testing.T) {
		dir := t.TempDir()
		log := filepath.Join(dir, "ran")
		script := filepath.Join(dir, "mark")
		if err := os.WriteFile(script, []byte("#!/bin/sh\necho ran >> "+log+"\n"), 0o700); err != nil {
			t.Fatal(err)
		}
		r, err := Run(context.Background(), Spec{Workload: "exec", Duration: time.Minute, MaxOps: 25, Workers: 1, ExecPath: script})
		if err != nil {
			t.Fatalf("exec storm: %v", err)
		}
		data, err := os.ReadFile(log)
		if err != nil {
			t.Fatalf("the exec'd script left no trace: %v", err)
		}
		if ran := strings.Count(string(data), "ran\n"); uint64(ran) != r.Ops || r.Ops != 25 {
			t.Fatalf("storm counted %d execs, the script ran %d times, want both 25", r.Ops, ran)
		}
		if !r.Capped {
			t.Error("a run ended by -max-ops must say capped")
		}
	})

	t.Run("exec storm fails when the child exits non-zero", func(t *testing.T) {
		_, err := Run(context.Background(), Spec{Workload: "exec", Duration: time.Minute, MaxOps: 5, ExecPath: "/bin/false"})
		if err == nil || !strings.Contains(err.Error(), "did not exit 0") {
			t.Fatalf("got error %v, want a report that /bin/false did not exit 0", err)
		}
	})

	t.Run("every counted connect was accepted by the loopback listener", func(t *testing.T) {
		r, err := Run(context.Background(), Spec{Workload: "connect", Duration: 300 * time.Millisecond})
		if err != nil {
			t.Fatalf("connect storm: %v", err)
		}
		if r.Ops == 0 || r.Accepted != r.Ops {
			t.Fatalf("connects %d, accepted %d: want equal and non-zero", r.Ops, r.Accepted)
		}
	})

	t.Run("read storm moves 64 bytes per op", func(t *testing.T) {
		r, err := Run(context.Background(), Spec{Workload: "read", Duration: 200 * time.Millisecond})
		if err != nil {
			t.Fatalf("read storm: %v", err)
		}
		if r.Ops == 0 || r.Bytes != r.Ops*readSize {
			t.Fatalf("ops %d, bytes %d: want bytes = ops × %d", r.Ops, r.Bytes, readSize)
		}
	})

	t.Run("the op cap is exact even with several workers", func(t *testing.T) {
		for _, w := range []string{"getppid", "read"} {
			r, err := Run(context.Background(), Spec{Workload: w, Duration: time.Minute, MaxOps: 1000, Workers: 3})
			if err != nil {
				t.Fatalf("%s storm: %v", w, err)
			}
			if r.Ops != 1000 || !r.Capped {
				t.Errorf("%s: ops %d capped %v, want exactly 1000 and capped", w, r.Ops, r.Capped)
			}
		}
	})

	t.Run("a run stops by itself at its duration", func(t *testing.T) {
		r, err := Run(context.Background(), Spec{Workload: "getppid", Duration: 100 * time.Millisecond})
		if err != nil {
			t.Fatalf("getppid storm: %v", err)
		}
		if r.Ops == 0 || r.Capped || r.Rate <= 0 {
			t.Fatalf("got %+v, want ops > 0, not capped, a positive rate", r)
		}
	})
}

func TestRunRejectsUnboundedOrUnknownWorkloads(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"an unknown workload is refused", Spec{Workload: "fsync", Duration: time.Second}, "unknown workload"},
		{"a run without a duration is refused", Spec{Workload: "getppid"}, "duration"},
		{"a run longer than ten minutes is refused", Spec{Workload: "getppid", Duration: time.Hour}, "duration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Run(context.Background(), tc.spec)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestCommandPrintsOneJSONResult(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"getppid", "-duration", "50ms", "-max-ops", "512", "-workers", "1"}, &out, &errOut); err != nil {
		t.Fatalf("storm getppid: %v (stderr %q)", err, errOut.String())
	}
	var r Result
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		t.Fatalf("output %q is not one Result JSON object: %v", out.String(), err)
	}
	if r.Workload != "getppid" || r.Workers != 1 || r.Ops == 0 || r.Ops > 512 {
		t.Fatalf("got %+v, want workload getppid, 1 worker, 0 < ops <= 512", r)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value printed: %q", out.String())
	}
}
