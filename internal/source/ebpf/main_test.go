package ebpf

import (
	"fmt"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary act as a helper program instead of
// running tests: "memfd" execs /bin/true from a memfd, "deleted" execs an
// already-unlinked copy of /bin/true (path in VIGIL_HELPER_FILE). Both pass
// the remaining arguments through as argv. The privilege modes
// (privilege_test.go) make one privileged syscall and exit.
const helperEnv = "VIGIL_EBPF_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if handled, err := runPrivilegeHelper(mode, os.Args[1:]); handled {
			if err != nil {
				fmt.Fprintln(os.Stderr, "helper:", err)
				os.Exit(2)
			}
			os.Exit(0)
		}
		if err := runHelper(mode); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

func runHelper(mode string) error {
	src, err := os.Open("/bin/true")
	if err != nil {
		return err
	}
	defer src.Close()
	var fd int
	switch mode {
	case "memfd":
		fd, err = unix.MemfdCreate("vigil-test", 0)
		if err != nil {
			return err
		}
		if _, err := io.Copy(os.NewFile(uintptr(fd), "memfd"), src); err != nil {
			return err
		}
	case "deleted":
		p := os.Getenv("VIGIL_HELPER_FILE")
		dst, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
		if err != nil {
			return err
		}
		if _, err := io.Copy(dst, src); err != nil {
			return err
		}
		dst.Close()
		if fd, err = unix.Open(p, unix.O_RDONLY, 0); err != nil {
			return err
		}
		if err := os.Remove(p); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown helper mode %q", mode)
	}
	args := append([]string{"true"}, os.Args[1:]...)
	return unix.Exec(fmt.Sprintf("/proc/self/fd/%d", fd), args, []string{"PATH=/usr/bin:/bin"})
}
