package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/agent"
	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/kube"
)

type agentFlags struct {
	hubURL, tokenFile, caFile, clusterID, namespace string
	interval                                        time.Duration
	image, pullPolicy                               string
	metricsAddr                                     string
	kubeconfig, kubeContext                         string
	once                                            bool
	credentialSecret                                string
	renewBefore                                     time.Duration
}

func newAgentCmd(g *globalFlags) *cobra.Command {
	f := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent --hub-url URL --hub-token-file F --cluster-id ID --sensor-image REF",
		Short: "Run the in-cluster agent: heartbeats and extension reconciliation (runs in vigil-system)",
		Long: `Run the in-cluster agent (what ` + "`vigil connect`" + ` installs as Deployment vigil-system/vigil-agent).
It dials out to the hub only (HTTPS; HTTPS_PROXY/NO_PROXY and a pinned CA honoured): every
--interval it sends a heartbeat (Kubernetes version, node count, agent version) and reconciles the
cluster's extensions: renders them from the embedded catalog, applies them with server-side apply
(field manager vigil-agent), re-creates what was deleted by hand, removes what the hub no longer
lists and reports provisioningState. Failures to reach the hub are logged with the URL and reason
and counted in vigil_agent_hub_errors_total (/metrics); /healthz says when the hub last answered.`,
		Example: `  vigil agent --hub-url https://hub:8443 --hub-token-file /var/run/vigil/agent/token \
    --hub-ca /var/run/vigil/agent/ca.crt --cluster-id /subscriptions/default/resourceGroups/rg/providers/Vigil.Kubernetes/connectedClusters/prod \
    --sensor-image vigil.local/vigil:0.1.0`,
		Args: usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return clio.Exit(clio.ExitUsage, err)
			}
			kc, err := kube.Load(kube.LoadOptions{Kubeconfig: f.kubeconfig, Context: f.kubeContext,
				InCluster: f.kubeconfig == "" && f.kubeContext == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != ""})
			if err != nil {
				return err
			}
			reg := prometheus.NewRegistry()
			reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
			a, err := agent.New(agent.Config{HubURL: f.hubURL, TokenFile: f.tokenFile, CAFile: f.caFile, ClusterID: f.clusterID,
				Namespace: f.namespace, Interval: f.interval, Image: f.image, PullPolicy: f.pullPolicy, Version: version,
				Kube: kc, Logger: log, Registerer: reg, CredentialSecret: f.credentialSecret, RenewBefore: f.renewBefore})
			if err != nil {
				return clio.Exit(clio.ExitUsage, err)
			}
			if f.once {
				return a.Once(cmd.Context())
			}
			if f.metricsAddr != "" {
				ln, err := net.Listen("tcp", f.metricsAddr)
				if err != nil {
					return fmt.Errorf("--metrics-addr %s: %w (pick a free address)", f.metricsAddr, err)
				}
				srv := &http.Server{Handler: a.Handler(reg), ReadHeaderTimeout: 10 * time.Second}
				go func() {
					if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
						log.Error("metrics server stopped", "addr", f.metricsAddr, "err", err)
					}
				}()
				defer func() {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					_ = srv.Shutdown(ctx)
				}()
				log.Info("serving /metrics and /healthz", "addr", ln.Addr().String())
			}
			return a.Run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.hubURL, "hub-url", "", "hub URL (https://HOST:PORT) the agent dials (required)")
	fl.StringVar(&f.tokenFile, "hub-token-file", "", "file holding the agent token, re-read every cycle (required)")
	fl.StringVar(&f.caFile, "hub-ca", "", "CA certificate (PEM) the hub's certificate must be signed by (pinned); default: the system's roots")
	fl.StringVar(&f.clusterID, "cluster-id", "", "ARM id of this connected cluster (required)")
	fl.StringVar(&f.namespace, "namespace", "vigil-system", "namespace of the agent and its extensions")
	fl.DurationVar(&f.interval, "interval", 30*time.Second, "heartbeat and reconcile period")
	fl.StringVar(&f.image, "sensor-image", "", "vigil image the extensions run, repository:tag (required)")
	fl.StringVar(&f.pullPolicy, "image-pull-policy", "IfNotPresent", "pull policy of the extensions' image: Always, IfNotPresent or Never")
	fl.StringVar(&f.metricsAddr, "metrics-addr", ":9465", "serve /metrics and /healthz here (empty: off)")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster service account, else $KUBECONFIG or ~/.kube/config)")
	fl.StringVar(&f.kubeContext, "kube-context", "", "kubeconfig context (default: the current one)")
	fl.StringVar(&f.credentialSecret, "credential-secret", "vigil-agent", "Secret (in --namespace) holding the agent token and its expiry; a renewed credential is written there")
	fl.DurationVar(&f.renewBefore, "renew-before", 44*24*time.Hour, "renew the credential this long before it expires (its expiry is read from expires-at beside --hub-token-file)")
	fl.BoolVar(&f.once, "once", false, "send one heartbeat, reconcile once and exit (non-zero on any failure)")
	return cmd
}
