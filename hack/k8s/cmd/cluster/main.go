// Command cluster runs vigil's single-node Kubernetes test cluster on this
// machine: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
// containerd, kubelet, kube-proxy and a CNI bridge, with the Kubernetes
// components built from the Go module proxy (this module) and cached by
// version. It also builds container images as OCI archives without Docker or
// a registry and imports them into the cluster's containerd.
//
// It is run through the scripts hack/cluster and hack/image:
//
//	hack/cluster up|down|status|kubeconfig
//	hack/image [vigil|busybox] [--out FILE] [--no-import]
//
// Everything it creates lives in the repository's .cluster/ directory (state,
// certificates, logs), the binary cache (/var/cache/vigil/k8s/<version>, or
// $VIGIL_K8S_CACHE) and a handful of kernel objects (a bridge, veths,
// iptables chains, cgroups, mounts) that `down` removes again.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const (
	k8sVersion = "v1.35.4"

	apiPort        = 16443
	etcdClientPort = 12379
	etcdPeerPort   = 12380
	cmPort         = 16257
	schedPort      = 16259
	kubeletPort    = 16250
	kubeletHealthz = 16248
	proxyHealthz   = 16256
	proxyMetrics   = 16249

	serviceCIDR   = "10.96.0.0/16"
	kubeServiceIP = "10.96.0.1"
	// auditWebhookIP is the ClusterIP the API server's audit webhook
	// backend sends to (a vigil.audit extension with source=webhook and
	// webhookClusterIP=auditWebhookIP), auditWebhookClient the common name
	// of the client certificate it authenticates with.
	auditWebhookIP     = "10.96.0.46"
	auditWebhookClient = "kube-apiserver-audit-webhook"
	clusterCIDR        = "10.244.0.0/16"
	podCIDR            = "10.244.0.0/24"
	bridgeName         = "vigil0"
	cniNetwork         = "vigil"

	pauseRef   = "vigil.local/pause:3.10"
	busyboxRef = "vigil.local/busybox:1"
)

// components in start order; down stops them in reverse (so the API server
// stops before etcd).
var components = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet", "kube-proxy"}

// env holds the paths and addresses one invocation works with.
type env struct {
	repo     string // repository root
	hackDir  string // repo/hack/k8s (this module)
	state    string // repo/.cluster
	cache    string // binary cache for this Kubernetes version
	nodeName string
	nodeIP   string
	start    time.Time
}

func (e *env) bin(name string) string     { return filepath.Join(e.cache, "bin", name) }
func (e *env) path(p ...string) string    { return filepath.Join(append([]string{e.state}, p...)...) }
func (e *env) kubeconfig() string         { return e.path("kubeconfig") }
func (e *env) containerdSock() string     { return e.path("containerd", "containerd.sock") }
func (e *env) logFile(name string) string { return e.path("logs", name+".log") }

// progress prints one line of progress on stderr, with the time since start.
func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(e.start).Seconds(), fmt.Sprintf(format, args...))
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  hack/cluster up           start the single-node test cluster (idempotent)
  hack/cluster down         stop it and remove everything it created (idempotent)
  hack/cluster status       show what runs; exit status 0 only when the cluster is healthy
  hack/cluster kubeconfig   print the admin kubeconfig's path (--raw: its contents)
  hack/cluster build        only install the packages and build/cache the binaries
  hack/image [vigil|busybox] [--out FILE] [--no-import]
                            build an OCI image archive and import it into the cluster;
                            prints the image reference on stdout
`)
}

func main() {
	repo := flag.String("repo", "", "repository root (default: found from the working directory)")
	flag.Usage = usage
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	e, err := newEnv(*repo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hack/cluster:", err)
		os.Exit(2)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "up":
		err = e.up(ctx)
	case "down":
		err = e.down(ctx)
	case "build":
		if err = e.ensurePackages(ctx); err == nil {
			err = e.ensureBinaries(ctx)
		}
	case "status":
		var healthy bool
		healthy, err = e.status(ctx, os.Stdout)
		if err == nil && !healthy {
			os.Exit(3)
		}
	case "kubeconfig":
		err = e.printKubeconfig(rest)
	case "image":
		err = e.imageCmd(ctx, rest)
	default:
		fmt.Fprintf(os.Stderr, "hack/cluster: unknown command %q\n", cmd)
		usage()
		os.Exit(2)
	}
	if err != nil {
		if cmd == "image" {
			fmt.Fprintf(os.Stderr, "hack/image: %v\n", err)
		} else {
			fmt.Fprintf(os.Stderr, "hack/cluster %s: %v\n", cmd, err)
		}
		os.Exit(1)
	}
}

func newEnv(repo string) (*env, error) {
	if repo == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("find the working directory: %w", err)
		}
		repo, err = findRepo(wd)
		if err != nil {
			return nil, err
		}
	}
	repo, err := filepath.Abs(repo)
	if err != nil {
		return nil, fmt.Errorf("resolve repository path %s: %w", repo, err)
	}
	cacheRoot := os.Getenv("VIGIL_K8S_CACHE")
	if cacheRoot == "" {
		cacheRoot = "/var/cache/vigil/k8s"
	}
	e := &env{
		repo:    repo,
		hackDir: filepath.Join(repo, "hack", "k8s"),
		state:   filepath.Join(repo, ".cluster"),
		cache:   filepath.Join(cacheRoot, k8sVersion),
		start:   time.Now(),
	}
	if s := os.Getenv("VIGIL_CLUSTER_DIR"); s != "" {
		e.state = s
	}
	e.nodeName, err = nodeName()
	if err != nil {
		return nil, err
	}
	e.nodeIP, err = nodeIP()
	if err != nil {
		return nil, err
	}
	return e, nil
}

// findRepo walks up from dir to the directory holding vigil's go.mod.
func findRepo(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/vigil-sec/vigil\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no vigil repository (go.mod of github.com/vigil-sec/vigil) above %s: run hack/cluster from the repository or pass --repo", dir)
		}
	}
}

// nodeName is the host name, lower-cased as Kubernetes requires.
func nodeName() (string, error) {
	if n := os.Getenv("VIGIL_NODE_NAME"); n != "" {
		return n, nil
	}
	h, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("read the host name for the node name: %w (set VIGIL_NODE_NAME)", err)
	}
	return strings.ToLower(h), nil
}

// nodeIP is eth0's IPv4 address (the kubelet rejects loopback), or
// $VIGIL_NODE_IP.
func nodeIP() (string, error) {
	if ip := os.Getenv("VIGIL_NODE_IP"); ip != "" {
		return ip, nil
	}
	ifname := os.Getenv("VIGIL_NODE_INTERFACE")
	if ifname == "" {
		ifname = "eth0"
	}
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return "", fmt.Errorf("find interface %s for the node IP: %w (set VIGIL_NODE_INTERFACE or VIGIL_NODE_IP)", ifname, err)
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return "", fmt.Errorf("list addresses of %s: %w", ifname, err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String(), nil
		}
	}
	return "", errors.New("interface " + ifname + " has no IPv4 address for the node IP (set VIGIL_NODE_IP)")
}

func (e *env) printKubeconfig(args []string) error {
	if _, err := os.Stat(e.kubeconfig()); err != nil {
		return fmt.Errorf("no kubeconfig at %s: run hack/cluster up", e.kubeconfig())
	}
	if len(args) == 1 && args[0] == "--raw" {
		b, err := os.ReadFile(e.kubeconfig())
		if err != nil {
			return fmt.Errorf("read kubeconfig: %w", err)
		}
		_, err = os.Stdout.Write(b)
		return err
	}
	if len(args) > 0 {
		return fmt.Errorf("unknown arguments %q: kubeconfig takes only --raw", args)
	}
	fmt.Println(e.kubeconfig())
	return nil
}
