package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// sysctls the kubelet, the CNI bridge plugin or kube-proxy may change; up
// records them and down restores them.
var sysctls = []string{
	"net/ipv4/ip_forward",
	"net/ipv4/conf/all/route_localnet",
	"net/bridge/bridge-nf-call-iptables",
	"vm/overcommit_memory",
	"vm/panic_on_oom",
	"kernel/panic",
	"kernel/panic_on_oops",
	"kernel/keys/root_maxkeys",
	"kernel/keys/root_maxbytes",
}

// hostDirs are directories outside .cluster that containerd, the CNI
// library or the kubelet create; down removes them when up found them absent.
var hostDirs = []string{"/run/netns", "/var/lib/cni", "/var/log/containers", "/run/containerd", "/var/lib/kubelet"}

// ownedHostDirs hold nothing but what this cluster's containerd and kubelet
// put there (shim sockets; the kubelet's device-plugin socket, whose path is
// fixed), so down removes them whole when up found them absent.
var ownedHostDirs = map[string]bool{"/run/containerd": true, "/var/lib/kubelet": true}

// hostState is the host as up found it.
type hostState struct {
	Sysctls map[string]string `json:"sysctls"`
	Existed map[string]bool   `json:"existed"`
	Netns   []string          `json:"netns"`
}

func (e *env) hostStatePath() string { return e.path("run", "host-before.json") }

func (e *env) recordHostState() error {
	hs := hostState{Sysctls: map[string]string{}, Existed: map[string]bool{}}
	for _, s := range sysctls {
		if b, err := os.ReadFile("/proc/sys/" + s); err == nil {
			hs.Sysctls[s] = strings.TrimSpace(string(b))
		}
	}
	for _, d := range hostDirs {
		_, err := os.Stat(d)
		hs.Existed[d] = err == nil
	}
	if des, err := os.ReadDir("/run/netns"); err == nil {
		for _, de := range des {
			hs.Netns = append(hs.Netns, de.Name())
		}
	}
	b, err := json.MarshalIndent(hs, "", "  ")
	if err != nil {
		return fmt.Errorf("encode host state: %w", err)
	}
	return writeFile(e.hostStatePath(), b, 0o644)
}

func (e *env) loadHostState() (hostState, bool) {
	var hs hostState
	b, err := os.ReadFile(e.hostStatePath())
	if err != nil || json.Unmarshal(b, &hs) != nil {
		return hostState{}, false
	}
	return hs, true
}

// down stops the cluster and removes everything it created.
func (e *env) down(ctx context.Context) error {
	unlock, err := flock(lockPath)
	if err != nil {
		return err
	}
	defer unlock()
	if err := e.teardown(ctx); err != nil {
		return err
	}
	e.progress("cluster down: no processes, mounts, cgroups, network devices, iptables chains or state left")
	return nil
}

// teardown stops every process and removes every kernel object, host file
// and state directory of the cluster, then checks that nothing is left.
func (e *env) teardown(ctx context.Context) error {
	hs, haveHS := e.loadHostState()

	// 1. The kubelet first, so it does not restart what we remove next.
	e.stopComponent("kubelet", 15*time.Second)
	// 2. Pods, through the CRI: kills containers, CNI DEL (veth, IP), netns.
	if e.componentPID("containerd") != 0 {
		n, err := e.removeSandboxes(ctx)
		if err != nil {
			e.progress("removing pod sandboxes through the CRI: %v (the remaining steps clean up after them)", err)
		} else if n > 0 {
			e.progress("removed %d pod sandboxes", n)
		}
	}
	// 3. The other components in reverse start order: the API server before etcd.
	for i := len(components) - 1; i >= 0; i-- {
		if c := components[i]; c != "kubelet" {
			e.stopComponent(c, 15*time.Second)
		}
	}
	// 4. Whatever survived: container processes in the pods' cgroups, shims,
	// and anything running from the binary cache or on .cluster.
	if n := killCgroupProcs(); n > 0 {
		e.progress("killed %d container processes left in kubepods cgroups", n)
	}
	for _, p := range e.strayProcs() {
		e.progress("stopping leftover process %d: %s", p.pid, p.cmdline)
		stopPID(p.pid, 5*time.Second)
	}
	// 5. iptables chains of kube-proxy, the kubelet and CNI.
	if _, err := os.Stat(e.bin("kube-proxy")); err == nil {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_ = exec.CommandContext(cctx, e.bin("kube-proxy"), "--cleanup", "--v=0").Run() // the sweep below checks the result
		cancel()
	}
	for _, ipt := range []string{"iptables", "ip6tables"} {
		if err := sweepChains(ipt); err != nil {
			e.progress("%v", err)
		}
	}
	// 6. Mounts: everything under .cluster, and the pods' network namespaces.
	e.unmountAll(hs.Netns)
	// 7. Network devices: the pods' veths and the bridge.
	if out, err := exec.Command("ip", "-o", "link", "show", "master", bridgeName).Output(); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if f := strings.Fields(line); len(f) > 1 {
				dev := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]
				_, _ = run("ip", "link", "del", dev)
			}
		}
	}
	if _, err := os.Stat("/sys/class/net/" + bridgeName); err == nil {
		if _, err := run("ip", "link", "del", bridgeName); err != nil {
			e.progress("%v", err)
		}
	}
	// 8. cgroups the kubelet and runc created.
	removeKubepodsCgroups()
	// 9. Host files of the CNI library and the kubelet.
	for _, pattern := range []string{"/var/lib/cni/results/" + cniNetwork + "-*", "/var/lib/cni/results/cni-loopback-*"} {
		matches, _ := filepath.Glob(pattern)
		for _, m := range matches {
			_ = os.Remove(m)
		}
	}
	_ = os.RemoveAll("/var/lib/cni/networks/" + cniNetwork)
	if des, err := os.ReadDir("/var/log/containers"); err == nil {
		for _, de := range des {
			p := filepath.Join("/var/log/containers", de.Name())
			if t, err := os.Readlink(p); err == nil && strings.HasPrefix(t, e.state+"/") {
				_ = os.Remove(p)
			}
		}
	}
	for _, d := range hostDirs {
		switch {
		case !haveHS || hs.Existed[d]:
		case ownedHostDirs[d]:
			_ = os.RemoveAll(d)
		default:
			removeEmptyTree(d)
		}
	}
	// 10. Sysctls as they were.
	if haveHS {
		e.restoreSysctls(hs, sysctls)
	}
	// 11. The state directory.
	if err := os.RemoveAll(e.state); err != nil {
		return fmt.Errorf("remove %s: %w (something still uses it: see lsof +D %s)", e.state, err, e.state)
	}
	return e.leftovers()
}

// restoreSysctls sets the named sysctls back to the values up found.
func (e *env) restoreSysctls(hs hostState, names []string) {
	for _, s := range names {
		v, ok := hs.Sysctls[s]
		if !ok {
			continue
		}
		if cur, err := os.ReadFile("/proc/sys/" + s); err == nil && strings.TrimSpace(string(cur)) != v {
			if err := os.WriteFile("/proc/sys/"+s, []byte(v), 0o644); err != nil {
				e.progress("restore sysctl %s=%s: %v", strings.ReplaceAll(s, "/", "."), v, err)
			}
		}
	}
}

func (e *env) stopComponent(name string, grace time.Duration) {
	if pid := e.componentPID(name); pid != 0 {
		if stopPID(pid, grace) {
			e.progress("%s (pid %d) did not stop within %s: killed", name, pid, grace)
		} else {
			e.progress("%s stopped", name)
		}
	}
}

// cgroupHierarchies lists the mounted cgroup hierarchies (v1 controllers and
// the v2 one).
func cgroupHierarchies() []string {
	var out []string
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for i, fld := range fields {
			if fld == "-" && i+1 < len(fields) && (fields[i+1] == "cgroup" || fields[i+1] == "cgroup2") {
				out = append(out, unescapeMount(fields[4]))
			}
		}
	}
	return out
}

// kubepodsDirs are the kubelet's cgroup trees in every hierarchy.
func kubepodsDirs() []string {
	var out []string
	for _, h := range cgroupHierarchies() {
		for _, name := range []string{"kubepods", "kubepods.slice"} {
			if st, err := os.Stat(filepath.Join(h, name)); err == nil && st.IsDir() {
				out = append(out, filepath.Join(h, name))
			}
		}
	}
	return out
}

// killCgroupProcs SIGKILLs every process in the kubepods cgroups.
func killCgroupProcs() int {
	seen := map[int]bool{}
	for round := 0; round < 20; round++ {
		found := false
		for _, d := range kubepodsDirs() {
			_ = filepath.WalkDir(d, func(p string, de fs.DirEntry, err error) error {
				if err != nil || de.IsDir() || de.Name() != "cgroup.procs" {
					return nil
				}
				b, _ := os.ReadFile(p)
				for _, s := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(s); err == nil && alive(pid) {
						_ = syscall.Kill(pid, syscall.SIGKILL)
						seen[pid], found = true, true
					}
				}
				return nil
			})
		}
		if !found {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return len(seen)
}

// removeKubepodsCgroups removes the kubepods cgroup trees, deepest first.
func removeKubepodsCgroups() {
	for attempt := 0; attempt < 30; attempt++ {
		dirs := kubepodsDirs()
		if len(dirs) == 0 {
			return
		}
		for _, d := range dirs {
			var all []string
			_ = filepath.WalkDir(d, func(p string, de fs.DirEntry, err error) error {
				if err == nil && de.IsDir() {
					all = append(all, p)
				}
				return nil
			})
			sort.Slice(all, func(i, j int) bool { return len(all[i]) > len(all[j]) })
			for _, p := range all {
				_ = syscall.Rmdir(p)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mountsUnder lists mount points under any of the prefixes, deepest first.
func mountsUnder(match func(string) bool) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 {
			if mp := unescapeMount(f[4]); match(mp) {
				out = append(out, mp)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}

// unmountAll unmounts everything under .cluster and the CNI network
// namespaces created since up (keepNetns existed before). /run/netns itself
// is shared with `ip netns` and other tools: its self bind mount (made by
// containerd, or `ip netns add`) is only removed when no network namespace is
// left in it, and the directory stays.
func (e *env) unmountAll(keepNetns []string) {
	keep := map[string]bool{}
	for _, n := range keepNetns {
		keep[filepath.Join("/run/netns", n)] = true
	}
	ours := func(mp string) bool {
		if strings.HasPrefix(mp, e.state+"/") || mp == e.state {
			return true
		}
		return strings.HasPrefix(mp, "/run/netns/cni-") && !keep[mp]
	}
	e.unmountMatching(ours)
	if des, err := os.ReadDir("/run/netns"); err == nil {
		for _, de := range des {
			p := filepath.Join("/run/netns", de.Name())
			if strings.HasPrefix(de.Name(), "cni-") && !keep[p] {
				_ = os.Remove(p)
			}
		}
	}
	if des, err := os.ReadDir("/run/netns"); err == nil && len(des) == 0 {
		e.unmountMatching(func(mp string) bool { return mp == "/run/netns" })
	}
}

func (e *env) unmountMatching(match func(string) bool) {
	for i := 0; i < 5; i++ {
		mps := mountsUnder(match)
		if len(mps) == 0 {
			return
		}
		for _, mp := range mps {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				e.progress("unmount %s: %v", mp, err)
			}
		}
	}
}

// sweepChains removes every KUBE-*, CNI-* and VIGIL-* chain, and the rules
// jumping to them, from all tables.
func sweepChains(ipt string) error {
	if _, err := exec.LookPath(ipt); err != nil {
		return nil
	}
	out, err := exec.Command(ipt + "-save").Output()
	if err != nil {
		return fmt.Errorf("%s-save: %w", ipt, err)
	}
	ours := func(chain string) bool {
		return strings.HasPrefix(chain, "KUBE-") || strings.HasPrefix(chain, "CNI-") || strings.HasPrefix(chain, "VIGIL-")
	}
	table := ""
	chains := map[string][]string{}
	var jumps [][]string // table + rule spec of rules in other chains jumping to ours
	for _, line := range strings.Split(string(out), "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":"):
			if name := strings.Fields(line[1:])[0]; ours(name) {
				chains[table] = append(chains[table], name)
			}
		case strings.HasPrefix(line, "-A "):
			f := strings.Fields(line)
			if len(f) < 2 || ours(f[1]) {
				continue
			}
			for i := 2; i+1 < len(f); i++ {
				if (f[i] == "-j" || f[i] == "-g") && ours(f[i+1]) {
					jumps = append(jumps, append([]string{table}, f[1:]...))
					break
				}
			}
		}
	}
	var errs []error
	for _, j := range jumps {
		// iptables-save quotes comments; a rule spec with quotes cannot be passed
		// back field by field, so delete such rules by number instead.
		if err := deleteRule(ipt, j[0], j[1], j[2:]); err != nil {
			errs = append(errs, err)
		}
	}
	for t, cs := range chains {
		for _, c := range cs {
			_, _ = run(ipt, "-t", t, "-F", c)
		}
		for _, c := range cs {
			if _, err := run(ipt, "-t", t, "-X", c); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// deleteRule deletes the first rule of chain whose jump target matches spec's.
func deleteRule(ipt, table, chain string, spec []string) error {
	target := ""
	for i := 0; i+1 < len(spec); i++ {
		if spec[i] == "-j" || spec[i] == "-g" {
			target = spec[i+1]
		}
	}
	out, err := exec.Command(ipt, "-t", table, "-S", chain).Output()
	if err != nil {
		return fmt.Errorf("%s -t %s -S %s: %w", ipt, table, chain, err)
	}
	n := 0
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "-A ") {
			continue
		}
		n++
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if (f[i] == "-j" || f[i] == "-g") && f[i+1] == target {
				_, err := run(ipt, "-t", table, "-D", chain, strconv.Itoa(n))
				return err
			}
		}
	}
	return nil
}

// removeEmptyTree removes a directory tree that holds no files (only
// directories), as left by containerd or the CNI library.
func removeEmptyTree(root string) {
	var dirs []string
	hasFiles := false
	_ = filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if de.IsDir() {
			dirs = append(dirs, p)
		} else {
			hasFiles = true
		}
		return nil
	})
	if hasFiles {
		return
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}

// leftovers checks that nothing of the cluster is left on the host.
func (e *env) leftovers() error {
	var left []string
	for _, p := range e.strayProcs() {
		left = append(left, fmt.Sprintf("process %d (%s)", p.pid, p.cmdline))
	}
	for _, mp := range mountsUnder(func(mp string) bool { return strings.HasPrefix(mp, e.state) }) {
		left = append(left, "mount "+mp)
	}
	for _, d := range kubepodsDirs() {
		left = append(left, "cgroup "+d)
	}
	if _, err := os.Stat("/sys/class/net/" + bridgeName); err == nil {
		left = append(left, "network device "+bridgeName)
	}
	for _, ipt := range []string{"iptables", "ip6tables"} {
		if out, err := exec.Command(ipt + "-save").Output(); err == nil {
			for _, line := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(line, ":KUBE-") || strings.HasPrefix(line, ":CNI-") || strings.HasPrefix(line, ":VIGIL-") {
					left = append(left, ipt+" chain "+strings.Fields(line[1:])[0])
				}
			}
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("could not remove everything the cluster created; left on the host:\n  %s\nrun hack/cluster down again, and if that does not help remove these by hand", strings.Join(left, "\n  "))
	}
	return nil
}

// unescapeMount undoes the octal escapes of /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
