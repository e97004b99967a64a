package ebpf

import (
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkGetppid measures what the syscall tracepoints cost every other
// process: enabling any syscalls:* tracepoint puts every syscall on the
// tracing slow path. Compare ns/op across the sub-benchmarks:
//
//	go test -run ^$ -bench Getppid ./internal/source/ebpf/
func BenchmarkGetppid(b *testing.B) {
	loop := func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			unix.Getppid()
		}
	}
	b.Run("no programs", loop)
	b.Run("process programs", func(b *testing.B) {
		startSource(b, Config{})
		b.ResetTimer()
		loop(b)
	})
	b.Run("process and file programs", func(b *testing.B) {
		startSource(b, Config{FileEvents: true})
		b.ResetTimer()
		loop(b)
	})
}

// BenchmarkExec measures a fork+exec of /bin/true with the programs attached.
func BenchmarkExec(b *testing.B) {
	run := func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if err := exec.Command("/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("no programs", run)
	b.Run("process and file programs", func(b *testing.B) {
		startSource(b, Config{FileEvents: true})
		b.ResetTimer()
		run(b)
	})
}
