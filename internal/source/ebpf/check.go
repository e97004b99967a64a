package ebpf

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	cebpf "github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

const fallbackHint = "or run with `--source proc`"

// Check verifies the host can run the eBPF source: kernel ≥ 5.11, kernel
// BTF, tracefs and the needed capabilities. Its errors say what to do.
func Check() error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return fmt.Errorf("ebpf source: uname: %w", err)
	}
	return check(hostPaths{
		release: unix.ByteSliceToString(uts.Release[:]),
		btf:     "/sys/kernel/btf/vmlinux",
		tracefs: []string{"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"},
		status:  "/proc/self/status",
	})
}

// hostPaths are what Check inspects: the kernel release and the files that
// show BTF, tracefs and the process's capabilities.
type hostPaths struct {
	release string   // uname -r
	btf     string   // kernel BTF file
	tracefs []string // tracefs events directories; one must exist
	status  string   // /proc/self/status (CapEff)
}

func check(h hostPaths) error {
	if major, minor, ok := kernelVersion(h.release); ok && (major < 5 || major == 5 && minor < 11) {
		return fmt.Errorf("ebpf source: kernel %s is too old: vigil's programs need Linux ≥ 5.11 (BPF ring buffers, bpf_get_current_task_btf) (%s)", h.release, fallbackHint)
	}
	if _, err := os.Stat(h.btf); err != nil {
		return fmt.Errorf("ebpf source: no kernel BTF at %s: needs a kernel built with CONFIG_DEBUG_INFO_BTF (Linux ≥ 5.11) (%s): %w", h.btf, fallbackHint, err)
	}
	if !tracefsMounted(h.tracefs) {
		return fmt.Errorf("ebpf source: tracefs is not mounted: run `mount -t tracefs nodev /sys/kernel/tracing` (%s)", fallbackHint)
	}
	return checkCaps(h.status)
}

func kernelVersion(rel string) (major, minor int, ok bool) {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0, false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	return major, minor, err1 == nil && err2 == nil
}

func tracefsMounted(dirs []string) bool {
	for _, p := range dirs {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return true
		}
	}
	return false
}

const (
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

func checkCaps(status string) error {
	b, err := os.ReadFile(status)
	if err != nil {
		return nil // cannot tell; the load itself reports EPERM
	}
	for _, line := range strings.Split(string(b), "\n") {
		hex, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return nil
		}
		has := func(c uint) bool { return eff&(1<<c) != 0 }
		if has(capSysAdmin) || (has(capBPF) && has(capPerfmon)) {
			return nil
		}
		return fmt.Errorf("ebpf source: missing privileges: run as root or grant CAP_BPF and CAP_PERFMON (+CAP_SYS_ADMIN for the network cgroup hooks) (%s)", fallbackHint)
	}
	return nil
}

// loadError wraps a load/attach failure with the fix for the common causes.
func loadError(what string, err error) error {
	var verr *cebpf.VerifierError
	if errors.As(err, &verr) && len(verr.Log) > 0 {
		return fmt.Errorf("ebpf source: the kernel verifier rejected %s (please report this with the kernel version) (%s): %w", what, fallbackHint, err)
	}
	switch {
	case errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission):
		return fmt.Errorf("ebpf source: loading %s: permission denied: run as root or grant CAP_BPF and CAP_PERFMON (+CAP_SYS_ADMIN for cgroup hooks) (%s): %w", what, fallbackHint, err)
	case errors.Is(err, cebpf.ErrNotSupported):
		return fmt.Errorf("ebpf source: loading %s: not supported by this kernel: vigil needs Linux ≥ 5.11 with BPF ring buffers and BTF (%s): %w", what, fallbackHint, err)
	}
	return fmt.Errorf("ebpf source: loading %s: %w (%s)", what, err, fallbackHint)
}
