package suite

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// RunGoBench runs `go test args...` in dir (the repository root) with the
// extra environment env, and parses its benchmark results. A run without a
// single result (every benchmark skipped, e.g. a missing prerequisite
// outside CI) is an error naming the reason go test printed.
func RunGoBench(ctx context.Context, dir string, env []string, args ...string) ([]BenchResult, []byte, error) {
	cmd := exec.CommandContext(ctx, "go", append([]string{"test"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(cmd.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, out, fmt.Errorf("go test %s: %w\n%s%s", strings.Join(args, " "), err, tail(out, 3000), tail(stderr.Bytes(), 2000))
	}
	rs, err := ParseGoBench(bytes.NewReader(out))
	if err != nil {
		return nil, out, fmt.Errorf("go test %s: %w", strings.Join(args, " "), err)
	}
	if len(rs) == 0 {
		return nil, out, fmt.Errorf("go test %s printed no benchmark result (skipped? run it by hand to see why):\n%s",
			strings.Join(args, " "), tail(out, 2000))
	}
	return rs, out, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
