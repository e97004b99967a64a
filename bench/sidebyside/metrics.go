package sidebyside

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
	MetricDrops         = "vigil_sensor_drops_total"
	MetricKernelRecords = "vigil_sensor_kernel_records_total"
	MetricDelivered     = "vigil_sensor_records_delivered_total"
	MetricExecEvents    = `vigil_sensor_events_total{kind="exec"}`
	MetricProcessTable  = "vigil_sensor_process_table_size"
	MetricEBPF          = `vigil_sensor_source_info{mode="ebpf"}`
)

// Metrics maps a series as printed in the Prometheus text format
// (`name` or `name{labels}`) to its value.
type Metrics map[string]float64

// ParseMetrics reads the Prometheus text exposition format; comment lines
// are skipped and timestamps ignored.
func ParseMetrics(r io.Reader) (Metrics, error) {
	s := Metrics{}
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

func Scrape(ctx context.Context, c *http.Client, addr string) (Metrics, error) {
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
	return ParseMetrics(resp.Body)
}
