package sidebyside

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime/stime in /proc/<pid>/stat (USER_HZ, 100 on
// every Linux architecture vigil supports).
const userHZ = 100

// parseStatCPU returns utime+stime of a /proc/<pid>/stat line: the CPU the
// whole thread group used, in user and kernel mode.
func parseStatCPU(stat []byte) (time.Duration, error) {
	// comm (field 2) may contain spaces and parentheses: fields after it
	// start behind the last ')'.
	end := bytes.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("no ')' closing the command name in %q", stat)
	}
	fields := strings.Fields(string(stat[end+1:]))
	// fields[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(fields) < 13 {
		return 0, fmt.Errorf("only %d fields after the command name in %q", len(fields), stat)
	}
	var ticks uint64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("utime/stime %q: %w", f, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading the sensor's CPU time: %w", err)
	}
	return parseStatCPU(b)
}

// Memory is a process's resident set, from /proc/<pid>/status.
type Memory struct {
	RSSKiB  uint64 `json:"vm_rss_kib"` // VmRSS: resident now
	PeakKiB uint64 `json:"vm_hwm_kib"` // VmHWM: the peak resident set
	// AnonKiB and FileKiB split VmRSS: RssAnon (heap, stacks) and RssFile
	// (the binary's text and data pages in use); 0 when the kernel does
	// not report them.
	AnonKiB uint64 `json:"rss_anon_kib,omitempty"`
	FileKiB uint64 `json:"rss_file_kib,omitempty"`
}

func parseStatus(status []byte) (Memory, error) {
	var m Memory
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM" && key != "RssAnon" && key != "RssFile") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("%s: unexpected value %q", key, val)
		}
		v, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("%s: %w", key, err)
		}
		switch key {
		case "VmRSS":
			m.RSSKiB = v
			found++
		case "VmHWM":
			m.PeakKiB = v
			found++
		case "RssAnon":
			m.AnonKiB = v
		case "RssFile":
			m.FileKiB = v
		}
	}
	if found != 2 {
		return m, fmt.Errorf("VmRSS or VmHWM missing from /proc/<pid>/status")
	}
	return m, nil
}

func ProcessMemory(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("reading the sensor's memory: %w", err)
	}
	return parseStatus(b)
}
