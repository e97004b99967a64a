// Package latency holds P5 of the performance suite as a Go benchmark:
// the time from an exec in a container to its alert being readable from
// the hub's API, with `vigil up` (hub and sensor) running as a real
// process and every container a real runc container.
//
//	go test -run '^$' -bench ExecInAContainer -benchtime 50x ./bench/latency
//
// It reports p50-ms, p99-ms and max-ms over the containers (one per
// iteration). It needs root, runc and busybox-static (it skips outside CI
// without them, and fails in CI). VIGIL_BENCH_VIGIL names an existing vigil
// binary; otherwise ./cmd/vigil is built.
package latency
