package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Metric names the runner reads from the sensor's /metrics.
const (
	mDrops     = "vigil_sensor_drops_total"
	mKernel    = "vigil_sensor_kernel_records_total"
	mDelivered = "vigil_sensor_records_delivered_total"
	mExecs     = `vigil_sensor_events_total{kind="exec"}`
	mTable     = "vigil_sensor_process_table_size"
	mEBPF      = `vigil_sensor_source_info{mode="ebpf"}`
)

// samples maps a series as printed in the Prometheus text format
// (`name` or `name{labels}`) to its value.
type samples map[string]float64

// parseMetrics reads the Prometheus text exposition format; comment lines
// are skipped and timestamps ignored.
func parseMetrics(r io.Reader) (samples, error) {
	s := samples{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		series, rest := line, ""
		if i := strings.LastIndexByte(line, '}'); i >= 0 {
			series, rest = line[:i+1], line[i+1:]
		} else if i := strings.IndexByte(line, ' '); i >= 0 {
			series, rest = line[:i], line[i:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 || len(f) > 2 {
			return nil, fmt.Errorf("metrics line %q: want `series value [timestamp]`", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		s[series] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading metrics: %w", err)
	}
	return s, nil
}

func scrape(ctx context.Context, c *http.Client, addr string) (samples, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping the sensor's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping the sensor's metrics: HTTP %s", resp.Status)
	}
	return parseMetrics(resp.Body)
}
