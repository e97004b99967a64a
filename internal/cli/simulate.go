package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/kube"
	"github.com/vigil-sec/vigil/internal/simulate"
	"github.com/vigil-sec/vigil/internal/store"
	"github.com/vigil-sec/vigil/rules"
)

// simulateCmds are the attack-simulation verbs (vigil simulate).
func simulateCmds(g *globalFlags) []*cobra.Command {
	return []*cobra.Command{newSimulateCmd(g)}
}

type simulateFlags struct {
	local   bool
	wait    time.Duration
	victim  string
	out     clio.Options
	remote  remoteFlags
	tempDir string
	bbShell bool
	kube    kubeFlags
	image   string
	ns      string
	ready   time.Duration
}

// simulateColumns are the columns of the result table.
var simulateColumns = []clio.Column{
	{Header: "Step", Path: "step"},
	{Header: "ExpectedAlert", Path: "expectedAlert"},
	{Header: "Seen", Path: "seen"},
	{Header: "Latency", Path: "latency"},
	{Header: "EventToHub", Path: "eventToHub"},
}

// simulateRow is one line of the result table.
type simulateRow struct {
	Step          string `json:"step"`
	ExpectedAlert string `json:"expectedAlert"`
	Seen          string `json:"seen"`
	Latency       string `json:"latency"`
	EventToHub    string `json:"eventToHub"`
}

func newSimulateCmd(g *globalFlags) *cobra.Command {
	f := &simulateFlags{out: clio.Options{Output: clio.Table}}
	scen := strings.Join(append(simulate.Scenarios(), simulate.ScenarioAll), "|")
	cmd := &cobra.Command{
		Use:   "simulate [" + scen + "]... (--local | --kube-context C)",
		Short: "Run a harmless attack simulation and check that each step's alert reaches the hub",
		Long: `Run vigil's harmless attack simulation and check its own alerts. An attacker drives a web
shell in a victim web server (commands run as the unprivileged web user) through the scenarios:

  webshell    a command through the web shell
  recon       discovery burst, read the service-account token, ask the Kubernetes API (a stub)
              what it may do, scan the API service's subnet (nmap if installed, else a burst of
              connection attempts by a built-in stand-in)
  lateral     request a token from the cloud metadata service (a stub at 169.254.169.254)
  secrets     search for credential files, read fake cloud credentials and the token, grep the
              environment for cloud credentials
  crypto      try to load the msr module with write access, touch /etc/ld.so.preload, download a
              fake miner from the attacker and run it (a renamed busybox that mines nothing)
  drift       download a binary that is not in the image and run it
  ti          resolve and contact the threat-intelligence test domain (answered by a stub)
  test-alert  the harmless test alert
  all         every scenario (the default)

With --local the victim and the attacker run as runc containers on this host, each in its own
network namespace; every address (the subnet 10.77.0.0/24, the metadata service, the test
domain's 198.51.100.77) exists only inside those namespaces, so no traffic leaves the host.
Everything is removed afterwards, also on failure or Ctrl-C.

With --kube-context (or --kubeconfig; the current context by default) the victim and the attacker
are pods in the namespace vigil-simulation (or vigil-simulation-ID with --namespace ID), running
vigil's image (--image, imagePullPolicy Never: build and import it first). The victim (busybox
httpd, the web shell as uid 33) resolves names through the attacker's stub DNS; the metadata
service (169.254.169.254) and the threat-intel test address live on the attacker's own interface
and the victim routes them to the attacker's pod IP, so no packet to them leaves the node. The
recon step reads the pod's real service-account token and asks the real API server; the scan
covers a few ports of the node's pod subnet. Commands reach the attacker through the API
server's pod proxy. The namespace is deleted afterwards, also on failure or Ctrl-C. Alerts are
matched by the namespace, so the cluster's sensor must add pod metadata (the vigil.sensor
extension does; a host sensor needs --kube-metadata on).

After the steps it waits (up to --wait) for each expected alert at the hub that vigil login saved
(or --hub/--token/--ca), prints step, expected alert, whether it was seen, the latency from the step's start to the
alert being stored at the hub (Latency, including the time the step's own tool took) and from
the triggering event to the hub (EventToHub: detection and delivery alone), and exits non-zero
if any is missing.`,
		Example: `  sudo vigil up &                       # a hub and a sensor for this host
  sudo vigil simulate all --local
  sudo vigil simulate crypto ti --local -o json
  vigil simulate all --kube-context dev --image vigil.local/vigil:0.1.0`,
		Args: func(cmd *cobra.Command, args []string) error {
			for _, a := range args {
				if a != simulate.ScenarioAll && !containsString(simulate.Scenarios(), a) {
					return clio.Errorf(clio.ExitUsage, "unknown scenario %q: use %s", a, scen)
				}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSimulate(cmd, g, f, args)
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&f.local, "local", false, "run the victim and the attacker as runc containers on this host (needs root, runc and busybox-static)")
	fl.DurationVar(&f.wait, "wait", 30*time.Second, "how long to wait after the last step for expected alerts to reach the hub")
	fl.StringVar(&f.victim, "victim", simulate.VictimBusybox, "local victim web server: busybox (httpd with a CGI web shell) or nginx-php (the host's nginx and php-fpm with a PHP web shell)")
	fl.StringVar(&f.tempDir, "temp-dir", "", "directory for the run's temporary files (default $TMPDIR or /tmp)")
	fl.BoolVar(&f.bbShell, "busybox-shell", false, "busybox victim: run the web shell's commands with busybox sh even when the host has dash or bash")
	_ = fl.MarkHidden("busybox-shell")
	f.kube.register(fl)
	fl.StringVar(&f.image, "image", "", "cluster mode: vigil's image the pods run (default vigil.local/vigil:VERSION; imagePullPolicy Never)")
	fl.StringVar(&f.ns, "namespace", "", "cluster mode: run in namespace vigil-simulation-ID instead of vigil-simulation (deleted afterwards)")
	fl.DurationVar(&f.ready, "ready-timeout", 3*time.Minute, "cluster mode: how long the pods may take to start")
	clio.AddFlags(fl, &f.out)
	f.remote.register(fl)
	cmd.AddCommand(newSimulateAttackerCmd(g), newSimulateNetscanCmd(), newSimulateKubeAPICmd())
	return cmd
}

func containsString(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func runSimulate(cmd *cobra.Command, g *globalFlags, f *simulateFlags, args []string) error {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	clusterMode := f.kube.context != "" || f.kube.kubeconfig != ""
	if f.local == clusterMode {
		if f.local {
			return clio.Errorf(clio.ExitUsage, "--local and --kube-context/--kubeconfig exclude each other: choose where the simulation runs")
		}
		return clio.Errorf(clio.ExitUsage, "choose where the simulation runs: --local (runc containers on this host) or --kube-context C (pods in a cluster; `kubectl config current-context` names the current one)")
	}
	if f.wait <= 0 {
		return clio.Errorf(clio.ExitUsage, "--wait %v: give a positive duration, e.g. 30s", f.wait)
	}
	if len(args) == 0 {
		args = []string{simulate.ScenarioAll}
	}
	names, err := ruleNames()
	if err != nil {
		return err
	}
	rem, err := f.remote.resolve()
	if err != nil {
		return err
	}
	var runner interface {
		simulate.Runner
		ID() string
	}
	where := f.victim + " victim"
	if clusterMode {
		kr, err := newKubeSimulation(f, log)
		if err != nil {
			return err
		}
		runner, where = kr, "cluster "+f.kube.context
		if f.kube.context == "" {
			where = "the current kube context"
		}
	} else {
		lr, err := simulate.NewLocalRunner(simulate.LocalConfig{Victim: f.victim, TempDir: f.tempDir, BusyboxShell: f.bbShell, Logger: log})
		if err != nil {
			return clio.Exit(clio.ExitUsage, err)
		}
		runner = lr
	}
	plan, err := simulate.Plan(args, runner.Tools(), names)
	if err != nil {
		return clio.Exit(clio.ExitUsage, err)
	}
	progress := cmd.ErrOrStderr()
	if runner.Tools().Shell == "" && !clusterMode {
		fmt.Fprintln(progress, "the victim's web shell uses busybox sh (no dash or bash in /usr/bin): commands name busybox's programs by path (/bin/id), since busybox sh would run them without exec")
	}
	fmt.Fprintf(progress, "simulation %s: %d steps (%s), alerts checked at %s\n", runner.ID(), len(plan), where, rem.client.Hub())
	list := func(ctx context.Context, since time.Time) ([]store.Alert, error) {
		as, _, err := rem.client.ListAlerts(ctx, hubclient.AlertListOptions{Subscription: rem.subscription, Since: since})
		if err != nil {
			return nil, err
		}
		out := make([]store.Alert, len(as))
		for i, a := range as {
			out[i] = alertView(a)
		}
		return out, nil
	}
	rep, err := simulate.Run(cmd.Context(), runner, plan, list, simulate.Options{Wait: f.wait, Progress: progress})
	if err != nil {
		if len(rep.Results) == 0 {
			return err
		}
		log.Error("simulation", "err", err)
	}
	if werr := writeSimulateReport(cmd, f, rep); werr != nil {
		return werr
	}
	if !rep.OK() {
		return clio.Errorf(clio.ExitGeneral, "%d of %d expected alert(s) did not reach the hub within --wait %v:\n  %s\n%s",
			len(rep.Missing), len(rep.Results), f.wait, strings.Join(rep.Missing, "\n  "), missingHint(clusterMode))
	}
	fmt.Fprintf(progress, "all %d expected alerts arrived; latency step -> hub: p50 %.0f ms, p99 %.0f ms, max %.0f ms; event -> hub: p50 %.0f ms, p99 %.0f ms, max %.0f ms\n",
		len(rep.Results), rep.P50Ms, rep.P99Ms, rep.MaxMs, rep.EventToHubP50Ms, rep.EventToHubP99Ms, rep.EventToHubMaxMs)
	return err
}

func writeSimulateReport(cmd *cobra.Command, f *simulateFlags, rep simulate.Report) error {
	w := cmd.OutOrStdout()
	if f.out.Output != clio.Table && f.out.Output != clio.TSV {
		return clio.Write(w, rep, f.out, nil)
	}
	rows := make([]simulateRow, 0, len(rep.Results))
	for _, r := range rep.Results {
		row := simulateRow{Step: r.Scenario + ": " + r.Step, ExpectedAlert: r.DisplayName + " (" + r.RuleID + ")", Seen: "no", Latency: "-", EventToHub: "-"}
		if r.Seen {
			row.Seen = "yes"
			row.Latency = fmt.Sprintf("%.0f ms", *r.LatencyMs)
		}
		if r.EventToHubMs != nil {
			row.EventToHub = fmt.Sprintf("%.0f ms", *r.EventToHubMs)
		}
		if r.StepError != "" {
			row.Seen += " (step failed)"
		}
		rows = append(rows, row)
	}
	return clio.Write(w, rows, f.out, simulateColumns)
}

// ruleNames maps the default catalog's rule ids to display names.
func ruleNames() (func(string) string, error) {
	rs, err := detect.LoadFS(rules.FS, "*.yaml")
	if err != nil {
		return nil, fmt.Errorf("default rules: %w", err)
	}
	m := map[string]string{}
	for _, r := range rs.Rules() {
		m[r.ID] = r.Name
	}
	return func(id string) string {
		if n, ok := m[id]; ok {
			return n
		}
		return id
	}, nil
}

func newSimulateAttackerCmd(g *globalFlags) *cobra.Command {
	var cfg simulate.AttackerConfig
	cmd := &cobra.Command{
		Use:    "attacker-server",
		Short:  "Serve the simulation attacker's stubs (runs inside the attacker container)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			cfg.Logger = log
			return simulate.ServeAttacker(cmd.Context(), cfg)
		},
	}
	cmd.Flags().StringVar(&cfg.VictimURL, "victim-url", "", "the victim's web-shell URL")
	cmd.Flags().StringVar(&cfg.Payload, "payload", "", "file served as the fake miner")
	return cmd
}

func newSimulateNetscanCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "netscan CIDR PORTS [HOST...]",
		Short:  "Built-in scanner stand-in: a burst of connection attempts (runs inside the victim)",
		Hidden: true,
		Args:   cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return simulate.NetScan(cmd.Context(), cmd.OutOrStdout(), args[0], args[1], args[2:]...)
		},
	}
}

// missingHint says what to check when expected alerts did not arrive.
func missingHint(cluster bool) string {
	if cluster {
		return "Is vigil's sensor running on the cluster's nodes (the vigil.sensor extension, or a host sensor with --kube-metadata on) and shipping to this hub? Alerts are matched by the pods' namespace."
	}
	return "Is a sensor running on this host and shipping to this hub (sudo vigil up)?"
}

// newKubeSimulation prepares a cluster run from the flags.
func newKubeSimulation(f *simulateFlags, log *slog.Logger) (*simulate.KubeRunner, error) {
	kc, err := kube.Load(kube.LoadOptions{Kubeconfig: f.kube.kubeconfig, Context: f.kube.context})
	if err != nil {
		return nil, clio.Exit(clio.ExitUsage, err)
	}
	ns := simulate.KubeNamespace
	if f.ns != "" {
		ns = f.ns
		if ns != simulate.KubeNamespace && !strings.HasPrefix(ns, simulate.KubeNamespace+"-") {
			ns = simulate.KubeNamespace + "-" + ns
		}
	}
	image := f.image
	if image == "" {
		image = "vigil.local/vigil:" + version
	}
	r, err := simulate.NewKubeRunner(simulate.KubeConfig{Config: kc.Config, Image: image, Namespace: ns, ReadyTimeout: f.ready, Logger: log})
	if err != nil {
		return nil, clio.Exit(clio.ExitUsage, err)
	}
	return r, nil
}
