package simulate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/vigil-sec/vigil/internal/ocispec"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Runner runs the simulation's workloads somewhere: LocalRunner on this
// host with runc; a cluster runner with pods. The vigil CLI drives any
// Runner the same way: Start, Deliver each step's command, Close.
type Runner interface {
	// Start creates the victim and the attacker and returns once the web
	// shell can take commands.
	Start(ctx context.Context) error
	// Tools reports which tools the victim has for the steps.
	Tools() Tools
	// Deliver has the attacker post command to the victim's web shell and
	// returns the shell's output.
	Deliver(ctx context.Context, command string) (string, error)
	// Scope identifies this run's alerts.
	Scope() Scope
	// Close removes everything Start created (containers, namespaces,
	// mounts, temporary files), also after a failed or interrupted Start.
	// It must not depend on a context that may already be cancelled.
	Close() error
}

// Scope selects the alerts a run raised.
type Scope struct {
	// ContainerIDs are the victim's container ids (local runs).
	ContainerIDs []string `json:"containerIds,omitempty"`
	// Namespace is the Kubernetes namespace of the run's pods (cluster
	// runs).
	Namespace string `json:"namespace,omitempty"`
}

// Victim kinds of a local run.
const (
	// VictimBusybox is busybox httpd with a CGI web shell: needs only
	// runc and busybox-static.
	VictimBusybox = "busybox"
	// VictimNginxPHP is the host's nginx and php-fpm (Debian packages)
	// with a PHP web shell calling system(): the real genealogy
	// nginx -> php-fpm -> sh.
	VictimNginxPHP = "nginx-php"
)

// NamePrefix starts the names of everything a local run creates
// (containers, cgroups, network namespaces, temporary directories).
const NamePrefix = "vigil-sim-"

// LocalConfig configures a LocalRunner.
type LocalConfig struct {
	// Victim is VictimBusybox (default) or VictimNginxPHP.
	Victim string
	// VigilBinary is vigil's own executable, bind-mounted into the
	// containers as the attacker's servers and the scanner stand-in
	// (default: the running executable).
	VigilBinary string
	// TempDir is where the run's directory is created (default
	// os.TempDir()).
	TempDir string
	// BusyboxShell makes the busybox victim's web shell use busybox sh
	// even when the host has dash or bash (to test that fallback).
	BusyboxShell bool
	Logger       *slog.Logger
}

// LocalRunner runs the victim and the attacker as runc containers on this
// host, each in its own network namespace, linked by a veth pair whose
// addresses exist only inside those namespaces.
type LocalRunner struct {
	cfg     LocalConfig
	id      string // NamePrefix + random hex
	runcBin string
	ipBin   string
	busybox string
	dir     string
	tools   Tools

	net      *simNetwork
	victim   *container
	attacker *container
	client   *http.Client
}

// NewLocalRunner checks the prerequisites (root, runc, ip, a static
// busybox; for nginx-php also nginx and php-fpm) and prepares a run.
func NewLocalRunner(cfg LocalConfig) (*LocalRunner, error) {
	if cfg.Victim == "" {
		cfg.Victim = VictimBusybox
	}
	if cfg.Victim != VictimBusybox && cfg.Victim != VictimNginxPHP {
		return nil, fmt.Errorf("victim %q: use %s or %s", cfg.Victim, VictimBusybox, VictimNginxPHP)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("a local simulation runs containers and network namespaces: run it as root (sudo vigil simulate ... --local)")
	}
	r := &LocalRunner{cfg: cfg}
	var err error
	if r.runcBin, err = exec.LookPath("runc"); err != nil {
		return nil, fmt.Errorf("runc not found on PATH: the local simulation runs its workloads with runc (apt-get install runc)")
	}
	if r.ipBin, err = exec.LookPath("ip"); err != nil {
		return nil, fmt.Errorf("ip not found on PATH: the local simulation sets up its network namespaces with it (apt-get install iproute2)")
	}
	if r.busybox, err = findBusybox(); err != nil {
		return nil, err
	}
	if cfg.VigilBinary == "" {
		if cfg.VigilBinary, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("find vigil's own executable to run the attacker's servers: %w", err)
		}
		r.cfg.VigilBinary = cfg.VigilBinary
	}
	if cfg.Victim == VictimNginxPHP {
		if _, err := nginxPHPBinaries(); err != nil {
			return nil, err
		}
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return nil, fmt.Errorf("generate a run id: %w", err)
	}
	r.id = NamePrefix + hex.EncodeToString(suffix)
	r.tools = Tools{NetScan: netscanPath + " simulate netscan"}
	// Host tools are visible in the victim through its read-only /usr.
	if fi, err := os.Stat("/usr/bin/curl"); err == nil && !fi.IsDir() {
		r.tools.Curl = "/usr/bin/curl"
	}
	if fi, err := os.Stat("/usr/bin/nmap"); err == nil && !fi.IsDir() {
		r.tools.Nmap = "/usr/bin/nmap"
	}
	// The web shells pick the first of these (see webShellCGI, addNginxPHP).
	for _, sh := range []string{"/usr/bin/dash", "/usr/bin/bash"} {
		if cfg.BusyboxShell && cfg.Victim == VictimBusybox {
			break
		}
		if fi, err := os.Stat(sh); err == nil && !fi.IsDir() {
			r.tools.Shell = sh
			break
		}
	}
	return r, nil
}

// ID is the run's id: the prefix of its containers, namespaces and
// temporary directory.
func (r *LocalRunner) ID() string { return r.id }

// Tools implements Runner.
func (r *LocalRunner) Tools() Tools { return r.tools }

// Scope implements Runner.
func (r *LocalRunner) Scope() Scope { return Scope{ContainerIDs: []string{r.id + "-victim"}} }

// Start implements Runner.
func (r *LocalRunner) Start(ctx context.Context) error {
	log := r.cfg.Logger
	dir, err := os.MkdirTemp(r.cfg.TempDir, r.id+"-")
	if err != nil {
		return fmt.Errorf("create the run's directory: %w", err)
	}
	r.dir = dir
	image := filepath.Join(dir, "image")
	if err := buildImage(image, r.busybox); err != nil {
		return fmt.Errorf("build the simulation image: %w", err)
	}
	if r.cfg.Victim == VictimNginxPHP {
		if err := addNginxPHP(image); err != nil {
			return err
		}
	}
	log.Debug("image built", "dir", image)
	if r.net, err = setupNetwork(ctx, r.ipBin, r.id); err != nil {
		return err
	}

	victimURL := fmt.Sprintf("http://%s:%d/cgi-bin/shell.cgi", victimIP, webPort)
	if r.cfg.Victim == VictimNginxPHP {
		victimURL = fmt.Sprintf("http://%s:%d/shell.php", victimIP, webPort)
	}
	r.attacker, err = newContainer(r.runcBin, dir, r.id+"-attacker", image, containerSpec{
		Args:     []string{attackerPath, "simulate", "attacker-server", "--victim-url", victimURL, "--payload", payloadPath},
		Env:      []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=/root"},
		Netns:    r.net.attackerPath(),
		Hostname: "attacker",
		ROBinds:  []string{"/usr"},
		FileBinds: map[string]string{
			attackerPath: r.cfg.VigilBinary,
			payloadPath:  r.busybox,
		},
	})
	if err != nil {
		return err
	}
	if err := r.attacker.start(ctx); err != nil {
		return fmt.Errorf("start the attacker: %w", err)
	}

	env := []string{"PATH=/bin:/sbin:/usr/bin:/usr/sbin", "HOME=" + webRoot,
		"KUBERNETES_SERVICE_HOST=" + apiServiceIP, "KUBERNETES_SERVICE_PORT=443",
		"AWS_ACCESS_KEY_ID=AKIAVIGILSIMULATION0", "AWS_SECRET_ACCESS_KEY=vigil-simulation-fake-secret"}
	vs := containerSpec{
		Env: env, Netns: r.net.victimPath(), Hostname: "victim", Cwd: webRoot,
		ROBinds:   []string{"/usr"},
		FileBinds: map[string]string{netscanPath: r.cfg.VigilBinary},
	}
	switch r.cfg.Victim {
	case VictimBusybox:
		if r.cfg.BusyboxShell {
			vs.Env = append(vs.Env, "VIGIL_SIM_BUSYBOX_SH=1")
		}
		// The web server itself runs as the unprivileged web user.
		vs.Args = []string{"httpd", "-f", "-p", fmt.Sprint(webPort), "-h", webRoot}
		vs.UID, vs.GID = webUID, webUID
	case VictimNginxPHP:
		// nginx's master and php-fpm's master start as root and run their
		// workers (and so the web shell) as www-data.
		bins, _ := nginxPHPBinaries()
		vs.Args = []string{"/bin/sh", "-c", bins.fpm + " -y /etc/vigil-sim/php-fpm.conf -D && exec " + bins.nginx +
			" -e stderr -c /etc/vigil-sim/nginx.conf -g 'daemon off;'"}
		vs.ROBinds = append(vs.ROBinds, "/etc/php", "/etc/nginx")
		// Host tools first, as in a Debian-based php image.
		vs.Env[0] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	if r.victim, err = newContainer(r.runcBin, dir, r.id+"-victim", image, vs); err != nil {
		return err
	}
	if err := r.victim.start(ctx); err != nil {
		return fmt.Errorf("start the victim: %w", err)
	}

	r.client = &http.Client{
		Timeout: 90 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return dialInNetns(ctx, r.net.attackerPath(), addr)
			},
			DisableKeepAlives: true,
		},
	}
	return r.waitReady(ctx)
}

// waitReady waits for the attacker's relay and the victim's web server to
// accept connections (without running anything in the victim, which would
// raise alerts before the first step).
func (r *LocalRunner) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	relay := fmt.Sprintf("http://127.0.0.1:%d/healthz", controlPort)
	for {
		var lastErr error
		if r.victim.exited() {
			return fmt.Errorf("the victim's web server exited: %s", strings.TrimSpace(r.victim.output.String()))
		}
		if r.attacker.exited() {
			return fmt.Errorf("the attacker's servers exited: %s", strings.TrimSpace(r.attacker.output.String()))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, relay, nil)
		resp, err := r.client.Do(req)
		if err == nil {
			resp.Body.Close()
			var c net.Conn
			c, err = dialInNetns(ctx, r.net.attackerPath(), fmt.Sprintf("%s:%d", victimIP, webPort))
			if err == nil {
				c.Close()
				return nil
			}
		}
		lastErr = err
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the simulation's workloads did not become ready within 30s: %v\nattacker: %s\nvictim: %s",
				lastErr, strings.TrimSpace(r.attacker.output.String()), strings.TrimSpace(r.victim.output.String()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Deliver implements Runner.
func (r *LocalRunner) Deliver(ctx context.Context, command string) (string, error) {
	if r.client == nil {
		return "", fmt.Errorf("the simulation was not started")
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/deliver", controlPort)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(command))
	if err != nil {
		return "", err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("deliver the command to the attacker's relay: %w", err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("read the web shell's output: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return string(out), fmt.Errorf("the attacker could not drive the web shell (%s): %s", resp.Status, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Close implements Runner: containers first (so nothing holds the
// namespaces or mounts), then the namespaces, then the run's directory.
func (r *LocalRunner) Close() error {
	var errs []error
	for _, c := range []*container{r.victim, r.attacker} {
		if c != nil {
			if err := c.remove(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	r.victim, r.attacker = nil, nil
	if r.net != nil {
		if err := r.net.remove(); err != nil {
			errs = append(errs, err)
		}
		r.net = nil
	}
	if r.dir != "" && len(errs) == 0 {
		if err := os.RemoveAll(r.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove the run's directory %s: %w", r.dir, err))
		}
		r.dir = ""
	} else if r.dir != "" {
		errs = append(errs, fmt.Errorf("kept the run's directory %s because of the errors above (remove it after fixing them)", r.dir))
	}
	if len(errs) > 0 {
		return fmt.Errorf("clean up simulation %s: %w", r.id, errors.Join(errs...))
	}
	return nil
}

// Leftovers lists what a run with id left on this host: network
// namespaces, cgroup directories, runc containers, mounts and temporary
// directories whose names start with id. Tests use it to prove cleanup.
func Leftovers(id, tempDir string) []string {
	if tempDir == "" {
		tempDir = os.TempDir()
	}
	var out []string
	if m, _ := filepath.Glob(filepath.Join(netnsDir, id+"*")); len(m) > 0 {
		out = append(out, m...)
	}
	for _, suffix := range []string{"-victim", "-attacker"} {
		out = append(out, ocispec.CgroupDirs("/"+id+suffix)...)
	}
	if m, _ := filepath.Glob(filepath.Join(tempDir, id+"*")); len(m) > 0 {
		out = append(out, m...)
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, id) {
				out = append(out, "mount: "+line)
			}
		}
	}
	if b, err := exec.Command("ip", "link", "show").Output(); err == nil && strings.Contains(string(b), id) {
		out = append(out, "host link mentioning "+id)
	}
	return out
}
