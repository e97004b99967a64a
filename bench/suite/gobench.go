package suite

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// BenchResult is one result line of `go test -bench` output.
type BenchResult struct {
	Pkg        string             `json:"pkg"`  // from the preceding "pkg:" line
	Name       string             `json:"name"` // without the -GOMAXPROCS suffix
	Iterations int64              `json:"iterations"`
	Metrics    map[string]float64 `json:"metrics"` // by unit: "ns/op", "allocs/op", "events/s", …
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

// ParseGoBench reads `go test -bench` output (several packages and -count
// repetitions allowed) and returns every result line. Lines that are not
// results (goos:, PASS, ok, logs) are skipped; a result line that does not
// parse is an error.
func ParseGoBench(r io.Reader) ([]BenchResult, error) {
	var out []BenchResult
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			// "BenchmarkX ... --- SKIP" or a log line starting with the name.
			continue
		}
		if len(f)%2 != 0 {
			return nil, fmt.Errorf("benchmark line %q: want `name iterations (value unit)...`", line)
		}
		br := BenchResult{Pkg: pkg, Name: procsSuffix.ReplaceAllString(f[0], ""), Iterations: n, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark line %q: value %q: %w", line, f[i], err)
			}
			br.Metrics[f[i+1]] = v
		}
		out = append(out, br)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading benchmark output: %w", err)
	}
	return out, nil
}

// Values collects unit over the results named name (exact, without the
// -GOMAXPROCS suffix) whose package ends with pkgSuffix (empty: any).
func Values(rs []BenchResult, pkgSuffix, name, unit string) []float64 {
	var xs []float64
	for _, r := range rs {
		if r.Name != name || (pkgSuffix != "" && !strings.HasSuffix(r.Pkg, pkgSuffix)) {
			continue
		}
		if v, ok := r.Metrics[unit]; ok {
			xs = append(xs, v)
		}
	}
	return xs
}
