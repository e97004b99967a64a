package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/vigil-sec/vigil/internal/agent"
	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/extcatalog"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/kube"
	"github.com/vigil-sec/vigil/internal/store"
)

// connectFieldManager owns what `vigil connect` applies.
const connectFieldManager = "vigil-connect"

// agentTokenLifetime is the agent credential's lifetime; the agent renews
// it from day 46 (hub: POST /ingest/v1/renewToken).
const agentTokenLifetime = 90 * 24 * time.Hour

// kubeFlags choose the cluster a verb changes.
type kubeFlags struct {
	kubeconfig, context string
}

func (k *kubeFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, else ~/.kube/config)")
	fs.StringVar(&k.context, "kube-context", "", "kubeconfig context (default: the current one)")
}

func (k *kubeFlags) load() (*kube.Client, error) {
	kc, err := kube.Load(kube.LoadOptions{Kubeconfig: k.kubeconfig, Context: k.context})
	if err != nil {
		return nil, clio.Exit(clio.ExitUsage, err)
	}
	return kc, nil
}

// hubCAPEM is the CA the CLI pins for the hub (--ca, else the saved one when
// it is for the same hub); the cluster's agent and sensor pin it too.
func (r *remoteFlags) hubCAPEM(hub string) (string, error) {
	if r.caFile != "" {
		return readCA(r.caFile)
	}
	cfg, err := hubclient.Load()
	if err != nil {
		return "", nil
	}
	saved, err := hubclient.NormalizeHubURL(cfg.Hub)
	if err == nil && saved == hub {
		return cfg.CAPEM, nil
	}
	return "", nil
}

// confirm asks a yes/no question on the command's streams; yes skips it.
func confirm(cmd *cobra.Command, yes bool, question string) error {
	if yes {
		return nil
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "%s [y/N] ", question)
	line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read the answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	if errors.Is(err, io.EOF) && strings.TrimSpace(line) == "" {
		return clio.Errorf(clio.ExitUsage, "no answer (stdin is not interactive): pass --yes to proceed without asking")
	}
	return clio.Errorf(clio.ExitGeneral, "cancelled: nothing was changed")
}

// parseKV reads k=v pairs (repeated or space-separated values of a flag).
func parseKV(flag string, vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, flagUsage("--%s %q is not key=value: give e.g. --%s env=prod", flag, v, flag)
		}
		out[k] = val
	}
	return out, nil
}

type connectFlags struct {
	name, group, location string
	tags                  []string
	yes                   bool
	agentImage            string
	pullPolicy            string
	hubURLFromCluster     string
	interval              string
	timeout               time.Duration
	proxyHTTPS, proxySkip string
}

func newConnectCmd() *cobra.Command {
	f := &connectFlags{}
	r := &remoteFlags{}
	k := &kubeFlags{}
	cmd := &cobra.Command{
		Use:   "connect --name N --resource-group G [--location L] [--tags k=v ...] [--kube-context C] [--yes]",
		Short: "Connect a Kubernetes cluster to the hub: register it and install the agent",
		Long: `Connect the cluster your kubeconfig points at (the az connectedk8s connect equivalent).
It shows the kube context and API server it is about to change and asks first (unless --yes),
registers the cluster at the hub (connectivityStatus Connecting), issues the agent's credential
(it is written into Secret vigil-system/vigil-agent and never printed), installs the agent
(ServiceAccount, least-privilege RBAC, Deployment) with server-side apply, and shows progress
until the hub reports Connected — or stops with the exact reason (hub unreachable from the
cluster, image not present, RBAC denied, ...).

The agent dials the hub at --hub-url-from-cluster (default: the hub URL the CLI uses) and pins the
hub's CA (--ca, else the one ` + "`vigil login`" + ` saved).`,
		Example: `  vigil connect --name prod --resource-group platform --location westeurope --tags env=prod owner=sre
  vigil connect -n dev -g lab --kube-context kind-dev --yes --hub-url-from-cluster https://10.0.0.5:8443`,
		Args: usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.name == "" || f.group == "" {
				return flagUsage("--name and --resource-group are required (the cluster's name and resource group at the hub)")
			}
			tags, err := parseKV("tags", f.tags)
			if err != nil {
				return err
			}
			if f.agentImage == "" {
				f.agentImage = "vigil.local/vigil:" + version
			}
			return runConnect(cmd, f, r, k, tags)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.name, "name", "n", "", "name of the cluster at the hub (required)")
	fl.StringVarP(&f.group, "resource-group", "g", "", "resource group (created on demand; required)")
	fl.StringVarP(&f.location, "location", "l", "", "location recorded on the cluster resource")
	fl.StringSliceVar(&f.tags, "tags", nil, "tags key=value (repeat or comma-separate)")
	fl.BoolVarP(&f.yes, "yes", "y", false, "do not ask before changing the cluster")
	fl.StringVar(&f.agentImage, "agent-image", "", "vigil image the agent (and the extensions) run (default vigil.local/vigil:VERSION)")
	fl.StringVar(&f.pullPolicy, "image-pull-policy", "IfNotPresent", "pull policy of the image: Always, IfNotPresent or Never (Never for images imported into the nodes)")
	fl.StringVar(&f.hubURLFromCluster, "hub-url-from-cluster", "", "hub URL as reachable from the cluster's pods (default: the hub URL of this CLI)")
	fl.StringVar(&f.interval, "agent-interval", "30s", "the agent's heartbeat and reconcile period")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Minute, "how long to wait for Connected")
	fl.StringVar(&f.proxyHTTPS, "proxy-https", "", "HTTPS proxy the agent and sensor use to reach the hub (sets HTTPS_PROXY in their pods), e.g. http://proxy:3128")
	fl.StringVar(&f.proxySkip, "proxy-skip-range", "", "addresses the agent and sensor reach without the proxy (NO_PROXY), e.g. 10.0.0.0/8,.svc")
	r.register(fl)
	k.register(fl)
	return cmd
}

func runConnect(cmd *cobra.Command, f *connectFlags, r *remoteFlags, k *kubeFlags, tags map[string]string) error {
	ctx := cmd.Context()
	out := cmd.ErrOrStderr()
	start := time.Now()
	rm, err := r.resolve()
	if err != nil {
		return err
	}
	defer rm.client.CloseIdleConnections()
	kc, err := k.load()
	if err != nil {
		return err
	}
	hubForCluster := f.hubURLFromCluster
	if hubForCluster == "" {
		hubForCluster = rm.client.Hub()
	}
	hubForCluster, err = hubclient.NormalizeHubURL(hubForCluster)
	if err != nil {
		return clio.Errorf(clio.ExitUsage, "--hub-url-from-cluster: %v", err)
	}
	if u, _ := url.Parse(hubForCluster); u != nil && isLoopbackHost(u.Hostname()) {
		fmt.Fprintf(out, "warning: the agent will dial %s, a loopback address, which inside a pod is the pod itself; pass --hub-url-from-cluster with an address pods can reach\n", hubForCluster)
	}
	caPEM, err := r.hubCAPEM(rm.client.Hub())
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Kube context: %s\nAPI server:   %s\nHub:          %s (agent dials %s)\nCluster:      %s in resource group %s (subscription %s)\n",
		orNone(kc.Context), kc.Server, rm.client.Hub(), hubForCluster, f.name, f.group, rm.subscription)
	if err := confirm(cmd, f.yes, "Install the vigil agent into namespace vigil-system of this cluster and register it at the hub?"); err != nil {
		return err
	}
	kver, err := kc.ServerVersion(ctx)
	if err != nil {
		return fmt.Errorf("the API server %s does not answer: %w; check `kubectl cluster-info`", kc.Server, err)
	}
	step := func(format string, a ...any) {
		fmt.Fprintf(out, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
	}
	step("API server %s answers (Kubernetes %s)", kc.Server, kver)
	var in hubclient.ClusterCreate
	in.Location, in.Tags = f.location, tags
	cl, err := rm.client.PutCluster(ctx, rm.subscription, f.group, f.name, in)
	if err != nil {
		return fmt.Errorf("register cluster %s at the hub: %w", f.name, err)
	}
	clusterID := cl.ID
	step("registered %s (%s)", clusterID, cl.Properties.ConnectivityStatus)
	// A re-connect replaces the credentials of an earlier connect.
	if ts, err := rm.client.ListTokens(ctx); err == nil {
		for _, tk := range ts {
			p := tk.Properties
			if p.ClusterID == clusterID && p.State == "Active" && (p.DisplayName == "agent-"+f.name || p.DisplayName == "sensor-"+f.name) {
				if _, err := rm.client.RevokeToken(ctx, tk.Name); err != nil {
					return fmt.Errorf("revoke the earlier credential %s of %s: %w", p.DisplayName, f.name, err)
				}
			}
		}
	}
	agentTok, err := rm.client.CreateToken(ctx, hubclient.TokenCreate{Name: "agent-" + f.name, Kind: store.TokenAgent, ClusterID: clusterID,
		ExpiresAt: time.Now().Add(agentTokenLifetime)})
	if err != nil {
		return fmt.Errorf("issue the agent token for %s: %w", f.name, err)
	}
	sensorTok, err := rm.client.CreateToken(ctx, hubclient.TokenCreate{Name: "sensor-" + f.name, Kind: store.TokenSensor, ClusterID: clusterID})
	if err != nil {
		return fmt.Errorf("issue the sensor token for %s: %w", f.name, err)
	}
	step("issued the agent's credential (kept in Secret vigil-system/vigil-agent)")
	objs, err := extcatalog.RenderAgent(extcatalog.AgentOptions{Target: extcatalog.Target{ClusterID: clusterID, HubURL: hubForCluster, HubCAPEM: caPEM,
		Image: f.agentImage, PullPolicy: f.pullPolicy, HTTPSProxy: f.proxyHTTPS, NoProxy: f.proxySkip}, Token: agentTok.Properties.Secret, TokenExpiresAt: agentTok.Properties.ExpiresAt, Interval: f.interval})
	if err != nil {
		return clio.Exit(clio.ExitUsage, err)
	}
	objs = append(objs, sensorTokenSecret("vigil-system", sensorTok.Properties.Secret))
	kube.SortForApply(objs)
	if _, err := kc.Apply(ctx, objs, kube.ApplyOptions{FieldManager: connectFieldManager}); err != nil {
		return fmt.Errorf("install the agent: %w", err)
	}
	step("applied %d objects (namespace vigil-system, ServiceAccount, RBAC, Secrets, Deployment vigil-agent)", len(objs))
	return waitConnected(ctx, cmd, rm, kc, f, start, step)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1"
}

func sensorTokenSecret(ns, token string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": agent.SensorTokenSecret, "namespace": ns,
			"labels": map[string]any{"app.kubernetes.io/part-of": "vigil", "app.kubernetes.io/managed-by": connectFieldManager}},
		"type":       "Opaque",
		"stringData": map[string]any{"token": token},
	}}
}

// fatalPod are agent pod states that waiting does not fix.
var fatalPod = []string{"ErrImageNeverPull", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "CreateContainerConfigError", "CrashLoopBackOff"}

func waitConnected(ctx context.Context, cmd *cobra.Command, rm *remote, kc *kube.Client, f *connectFlags, start time.Time, step func(string, ...any)) error {
	deadline := time.Now().Add(f.timeout)
	lastMsg := ""
	show := func(msg string) {
		if msg != lastMsg {
			step("%s", msg)
			lastMsg = msg
		}
	}
	podRunningSince := time.Time{}
	for {
		cl, err := rm.client.GetCluster(ctx, rm.subscription, f.group, f.name)
		if err != nil {
			return fmt.Errorf("read cluster %s at the hub: %w", f.name, err)
		}
		if cl.Properties.ConnectivityStatus == store.Connected {
			show(fmt.Sprintf("Connected: agent %s, Kubernetes %s, %d nodes", cl.Properties.AgentVersion, cl.Properties.KubernetesVersion, cl.Properties.TotalNodeCount))
			fmt.Fprintf(cmd.OutOrStdout(), "cluster %s is Connected (%.1fs)\n", f.name, time.Since(start).Seconds())
			return nil
		}
		ready, problem, err := kc.DeploymentReady(ctx, "vigil-system", "vigil-agent")
		switch {
		case err != nil:
			show("cannot read the agent Deployment: " + err.Error())
		case containsAnyStr(problem, fatalPod):
			return clio.Errorf(clio.ExitGeneral, "the agent cannot start: %s\n%s", problem, podHint(problem))
		case !ready:
			show("waiting for the agent pod: " + orDefault(problem, "starting"))
			podRunningSince = time.Time{}
		default:
			if podRunningSince.IsZero() {
				podRunningSince = time.Now()
			}
			why := agentLogProblem(ctx, kc)
			show("agent running; waiting for its first heartbeat at the hub (" + cl.Properties.ConnectivityStatus + ")" + prefixIf("; agent log: ", why))
			if why != "" && time.Since(podRunningSince) > 20*time.Second {
				return clio.Errorf(clio.ExitUnreachable, "the agent runs but cannot reach the hub: %s\nfix: make the hub reachable from the cluster's pods at the URL given by --hub-url-from-cluster (check DNS, firewalls, proxies: `vigil preflight --in-cluster`), then run connect again", why)
			}
		}
		if time.Now().After(deadline) {
			return clio.Errorf(clio.ExitGeneral, "cluster %s is still %s after %s: %s; check `kubectl -n vigil-system logs deploy/vigil-agent`", f.name, cl.Properties.ConnectivityStatus, f.timeout, orDefault(lastMsg, "no progress"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func prefixIf(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func containsAnyStr(s string, subs []string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

func podHint(problem string) string {
	switch {
	case strings.Contains(problem, "ErrImageNeverPull"):
		return "fix: the image is not present on the node and the pull policy is Never: import it into the nodes' container runtime (hack/image) or pass --agent-image with an image the nodes can pull and --image-pull-policy IfNotPresent"
	case strings.Contains(problem, "ImagePull") || strings.Contains(problem, "InvalidImageName"):
		return "fix: the nodes cannot pull the image: check --agent-image and the registry's reachability/credentials"
	case strings.Contains(problem, "CrashLoopBackOff"):
		return "fix: read the agent's log: kubectl -n vigil-system logs deploy/vigil-agent --previous"
	}
	return "fix: kubectl -n vigil-system describe pods -l app.kubernetes.io/name=vigil-agent"
}

// agentLogProblem returns the agent's last "cannot reach the hub" log line
// (the reason), or "".
func agentLogProblem(ctx context.Context, kc *kube.Client) string {
	pods, err := kc.Kube.CoreV1().Pods("vigil-system").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=vigil-agent"})
	if err != nil || len(pods.Items) == 0 {
		return ""
	}
	tail := int64(50)
	for _, p := range pods.Items {
		if p.Status.Phase != corev1.PodRunning {
			continue
		}
		b, err := kc.Kube.CoreV1().Pods("vigil-system").GetLogs(p.Name, &corev1.PodLogOptions{TailLines: &tail}).DoRaw(ctx)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		for i := len(lines) - 1; i >= 0; i-- {
			if strings.Contains(lines[i], "heartbeat sent") || strings.Contains(lines[i], "reported extension status") {
				return ""
			}
			if strings.Contains(lines[i], "cannot reach the hub") {
				return strings.TrimSpace(lines[i])
			}
		}
	}
	return ""
}

func newDisconnectCmd() *cobra.Command {
	var name, group string
	var yes bool
	var timeout time.Duration
	r := &remoteFlags{}
	k := &kubeFlags{}
	cmd := &cobra.Command{
		Use:   "disconnect --name N --resource-group G [--kube-context C] [--yes]",
		Short: "Remove the agent, the extensions and the cluster resource at the hub (idempotent)",
		Long: `Disconnect a cluster: removes the agent (so it stops re-applying), then the extensions' objects
(sensor DaemonSet, RBAC, secrets), the namespace vigil-system, and finally the cluster resource at
the hub with its extensions and tokens. Running it again when something is already gone is fine.`,
		Example: "  vigil disconnect --name prod --resource-group platform --yes",
		Args:    usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || group == "" {
				return flagUsage("--name and --resource-group are required")
			}
			ctx := cmd.Context()
			out := cmd.ErrOrStderr()
			start := time.Now()
			rm, err := r.resolve()
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			kc, err := k.load()
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Kube context: %s\nAPI server:   %s\nCluster:      %s in resource group %s at %s\n", orNone(kc.Context), kc.Server, name, group, rm.client.Hub())
			if err := confirm(cmd, yes, "Remove vigil (agent, extensions, namespace vigil-system) from this cluster and delete it at the hub?"); err != nil {
				return err
			}
			step := func(format string, a ...any) {
				fmt.Fprintf(out, "[%5.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, a...))
			}
			wctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			// 1. the agent (with placeholder values: only names matter).
			agentObjs, err := extcatalog.RenderAgent(extcatalog.AgentOptions{Target: extcatalog.Target{ClusterID: "/subscriptions/x/resourceGroups/x/providers/Vigil.Kubernetes/connectedClusters/x", HubURL: "https://x", Image: "x:x"}, Token: "x"})
			if err != nil {
				return err
			}
			var agentOnly []*unstructured.Unstructured
			var ns *unstructured.Unstructured
			for _, o := range agentObjs {
				if o.GetKind() == "Namespace" {
					ns = o
					continue
				}
				agentOnly = append(agentOnly, o)
			}
			if err := kc.Delete(wctx, agentOnly); err != nil {
				return fmt.Errorf("remove the agent: %w", err)
			}
			if err := kc.WaitGone(wctx, agentOnly, time.Second); err != nil {
				return fmt.Errorf("remove the agent: %w", err)
			}
			step("agent removed")
			// 2. extensions (every catalog type) and the sensor token.
			var extObjs []*unstructured.Unstructured
			for _, t := range extcatalog.Catalog() {
				rd, err := extcatalog.Render(extcatalog.Extension{Name: "x", Type: t.Name, Protected: map[string]string{extcatalog.ProtectedHubToken: "x"}},
					extcatalog.Target{ClusterID: "/subscriptions/x/resourceGroups/x/providers/Vigil.Kubernetes/connectedClusters/x", HubURL: "https://x", Image: "x:x"})
				if err != nil {
					return err
				}
				extObjs = append(extObjs, rd.Removable()...)
			}
			extObjs = append(extObjs, sensorTokenSecret("vigil-system", ""))
			if err := kc.Delete(wctx, extObjs); err != nil {
				return fmt.Errorf("remove the extensions: %w", err)
			}
			if err := kc.WaitGone(wctx, extObjs, time.Second); err != nil {
				return fmt.Errorf("remove the extensions: %w", err)
			}
			step("extensions removed")
			if ns != nil {
				if err := kc.Delete(wctx, []*unstructured.Unstructured{ns}); err != nil {
					return fmt.Errorf("remove namespace vigil-system: %w", err)
				}
				if err := kc.WaitGone(wctx, []*unstructured.Unstructured{ns}, time.Second); err != nil {
					return fmt.Errorf("remove namespace vigil-system: %w", err)
				}
				step("namespace vigil-system removed")
			}
			// 3. the hub resource (its extensions and tokens go with it).
			if err := rm.client.DeleteCluster(ctx, rm.subscription, group, name); err != nil {
				return fmt.Errorf("delete cluster %s at the hub: %w", name, err)
			}
			step("cluster %s deleted at the hub", name)
			fmt.Fprintf(cmd.OutOrStdout(), "cluster %s disconnected (%.1fs)\n", name, time.Since(start).Seconds())
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&name, "name", "n", "", "name of the cluster at the hub (required)")
	fl.StringVarP(&group, "resource-group", "g", "", "resource group (required)")
	fl.BoolVarP(&yes, "yes", "y", false, "do not ask")
	fl.DurationVar(&timeout, "timeout", 3*time.Minute, "how long to wait for objects to be gone")
	r.register(fl)
	k.register(fl)
	return cmd
}
