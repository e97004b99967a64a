package ebpf

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cebpf "github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// fakeHost builds a hostPaths whose files exist or not as asked, in a temp
// dir, with the given CapEff line content.
func fakeHost(t *testing.T, release string, btf, tracefs bool, capEff string) hostPaths {
	t.Helper()
	dir := t.TempDir()
	h := hostPaths{
		release: release,
		btf:     filepath.Join(dir, "btf", "vmlinux"),
		tracefs: []string{filepath.Join(dir, "tracing", "events"), filepath.Join(dir, "debug", "tracing", "events")},
		status:  filepath.Join(dir, "status"),
	}
	if btf {
		if err := os.MkdirAll(filepath.Dir(h.btf), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(h.btf, []byte("BTF"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if tracefs {
		if err := os.MkdirAll(h.tracefs[1], 0o755); err != nil { // the debugfs location
			t.Fatal(err)
		}
	}
	status := "Name:\tvigil\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t" + capEff + "\nCapBnd:\t000001ffffffffff\n"
	if err := os.WriteFile(h.status, []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

func capHex(caps ...uint) string {
	var v uint64
	for _, c := range caps {
		v |= 1 << c
	}
	return fmt.Sprintf("%016x", v)
}

func TestCheckNamesTheFix(t *testing.T) {
	const root = "000001ffffffffff"
	for _, tc := range []struct {
		name    string
		release string
		btf     bool
		tracefs bool
		capEff  string
		want    []string // substrings of the error; nil means no error
	}{
		{"a complete 6.x host as root passes", "6.18.44-fc", true, true, root, nil},
		{"tracefs under debugfs counts as mounted", "5.15.0-91-generic", true, true, root, nil},
		{"CAP_BPF with CAP_PERFMON is enough without CAP_SYS_ADMIN", "6.1.0", true, true, capHex(capBPF, capPerfmon), nil},
		{"an unparsable release is not rejected", "weird", true, true, root, nil},
		{"a 5.4 kernel is too old and the error says 5.11 and the proc fallback", "5.4.0-150-generic", true, true, root,
			[]string{"5.4.0-150-generic", "Linux ≥ 5.11", "--source proc"}},
		{"a 5.10 kernel lacks bpf_get_current_task_btf and is too old", "5.10.0-28-amd64", true, true, root,
			[]string{"5.10.0-28-amd64", "Linux ≥ 5.11", "--source proc"}},
		{"a 4.19 kernel is too old", "4.19.0", true, true, root, []string{"too old", "--source proc"}},
		{"missing kernel BTF names CONFIG_DEBUG_INFO_BTF and the proc fallback", "6.1.0", false, true, root,
			[]string{"no kernel BTF", "CONFIG_DEBUG_INFO_BTF", "--source proc"}},
		{"unmounted tracefs gives the mount command", "6.1.0", true, false, root,
			[]string{"tracefs is not mounted", "mount -t tracefs nodev /sys/kernel/tracing", "--source proc"}},
		{"no capabilities asks for root or CAP_BPF and CAP_PERFMON", "6.1.0", true, true, capHex(),
			[]string{"missing privileges", "CAP_BPF", "CAP_PERFMON", "--source proc"}},
		{"CAP_BPF without CAP_PERFMON is not enough", "6.1.0", true, true, capHex(capBPF), []string{"CAP_PERFMON"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := check(fakeHost(t, tc.release, tc.btf, tc.tracefs, tc.capEff))
			if tc.want == nil {
				if err != nil {
					t.Fatalf("check: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("check passed, want an error mentioning %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}

	t.Run("the missing BTF error wraps the stat error", func(t *testing.T) {
		err := check(fakeHost(t, "6.1.0", false, true, root))
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("error %v does not wrap os.ErrNotExist", err)
		}
	})

	t.Run("an unreadable status file defers to the load", func(t *testing.T) {
		h := fakeHost(t, "6.1.0", true, true, root)
		h.status = filepath.Join(t.TempDir(), "absent")
		if err := check(h); err != nil {
			t.Errorf("check: %v, want nil (the load reports EPERM itself)", err)
		}
	})
}

func TestLoadErrorNamesTheFix(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want []string
	}{
		{"EPERM asks for root or CAP_BPF", fmt.Errorf("load: %w", unix.EPERM),
			[]string{"loading exec programs", "permission denied", "CAP_BPF", "--source proc"}},
		{"an unsupported feature names the kernel requirement", fmt.Errorf("map create: %w", cebpf.ErrNotSupported),
			[]string{"not supported", "Linux ≥ 5.11", "BTF", "--source proc"}},
		{"a verifier rejection asks for a report with the kernel version",
			&cebpf.VerifierError{Cause: unix.EINVAL, Log: []string{"R1 invalid mem access 'scalar'"}},
			[]string{"verifier rejected exec programs", "kernel version", "--source proc"}},
		{"any other failure still offers the proc fallback", unix.E2BIG, []string{"loading exec programs", "--source proc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := loadError("exec programs", tc.err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("error %v does not wrap %v", err, tc.err)
			}
		})
	}
}
