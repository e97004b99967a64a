package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vigil-sec/vigil/internal/audit"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/outbox"
	"github.com/vigil-sec/vigil/internal/sensorcmd"
	"github.com/vigil-sec/vigil/internal/store"
)

type auditFlags struct {
	log           string
	logState      string
	fromEnd       bool
	maxLine       string
	listen        string
	tokenFile     string
	tlsCert       string
	tlsKey        string
	clientCA      string
	clientNames   []string
	maxBody       string
	queue         int
	alertsOut     string
	eventsOut     string
	metricsAddr   string
	node          string
	podLookup     string
	kubeconfig    string
	rules         ruleSource
	hub           hubShipFlags
	listenStarted func(addr net.Addr) // tests: the webhook's bound address
}

func newAuditCmd(g *globalFlags) *cobra.Command {
	f := &auditFlags{}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Judge the Kubernetes API server's audit events (audit log or audit webhook) with the rules",
		Long: `Read the Kubernetes API server's audit events (audit.k8s.io/v1) and judge them with the
same rule engine and catalog as runtime events (event kind audit, rules/audit.yaml): a pod's
service account asking what it may do, secrets listed across namespaces, exec into pods,
privileged or host-mounting pods, cluster-admin bindings, new admission webhooks and more.

Two sources, one per process:
  --log FILE            follow the audit log the API server writes (--audit-log-path) on a
                        control-plane node: rotation by rename or truncation is followed, and the
                        position is kept in --log-state so a restart neither repeats nor loses lines.
  --webhook-listen ADDR serve the API server's audit webhook backend over HTTPS
                        (--audit-webhook-config-file points at it); the sender must present the
                        bearer token of --webhook-token-file or a client certificate signed by
                        --webhook-client-ca.

Alerts go to --alerts-out and/or the hub (--hub-url), like the sensor's. Request-object fields
(privileged, hostPath, roleRef) need the audit policy to log pods, workloads and RBAC objects at
level Request; see docs/events.md.`,
		Example: `  # follow the audit log on a control-plane node, alerts on stdout
  vigil audit --log /var/log/kubernetes/audit/audit.log --alerts-out -

  # serve the audit webhook and ship alerts to the hub
  vigil audit --webhook-listen :8443 --webhook-token-file /etc/vigil/webhook-token \
    --tls-cert /etc/vigil/tls/tls.crt --tls-key /etc/vigil/tls/tls.key \
    --hub-url https://hub.example.com:8443 --hub-token-file /etc/vigil/hub-token --cluster-id /subscriptions/...`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAudit(cmd, g, f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.log, "log", "", "follow this audit log FILE (the API server's --audit-log-path)")
	fl.StringVar(&f.logState, "log-state", "/var/lib/vigil/audit-log.position", "FILE keeping the position in --log across restarts (\"\" keeps none)")
	fl.BoolVar(&f.fromEnd, "from-end", false, "with no saved position, start at the end of --log instead of reading its history")
	fl.StringVar(&f.maxLine, "max-line-bytes", "4MiB", "audit log lines longer than this are skipped and counted")
	fl.StringVar(&f.listen, "webhook-listen", "", "serve the audit webhook (HTTPS) on this address, e.g. :8443")
	fl.StringVar(&f.tokenFile, "webhook-token-file", "", "FILE holding the bearer token the API server's webhook kubeconfig sends")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "server certificate (PEM) of the webhook; its names must match the URL in the webhook kubeconfig")
	fl.StringVar(&f.tlsKey, "tls-key", "", "private key (PEM) of --tls-cert")
	fl.StringVar(&f.clientCA, "webhook-client-ca", "", "CA (PEM) whose client certificates authenticate the API server (its webhook kubeconfig's client-certificate)")
	fl.StringArrayVar(&f.clientNames, "webhook-client-name", nil, "accept only client certificates with this common name or DNS name (repeatable; default any signed by --webhook-client-ca)")
	fl.StringVar(&f.maxBody, "webhook-max-body", "32MiB", "largest webhook request body accepted (413 above)")
	fl.IntVar(&f.queue, "queue", 10000, "webhook events waiting for the rules; beyond it events are dropped and counted, never blocking the API server")
	fl.StringVar(&f.alertsOut, "alerts-out", "", "write alerts (and their aggregated updates, same id) as JSON lines to FILE (appended), or - for stdout")
	fl.StringVar(&f.eventsOut, "events-out", "", "write every judged audit event as JSON lines to FILE (appended), or - for stdout")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and /healthz on this address (e.g. 127.0.0.1:9465)")
	fl.StringVar(&f.node, "node", "", "node name put on events that do not name one (default $NODE_NAME or the hostname)")
	fl.StringVar(&f.podLookup, "pod-lookup", "auto", "name the pod a request came from by its source address, from the Kubernetes API: auto (in a pod or with --kubeconfig), on, off")
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig `file` for --pod-lookup outside a pod")
	f.rules.flags(cmd)
	f.hub.register(fl)
	return cmd
}

func runAudit(cmd *cobra.Command, g *globalFlags, f *auditFlags) error {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	if (f.log == "") == (f.listen == "") {
		return errors.New("pass exactly one source: --log FILE (the API server's audit log) or --webhook-listen ADDR (its audit webhook); run one vigil audit per source")
	}
	if f.alertsOut == "" && !f.hub.enabled() {
		return errors.New("nothing to report to: pass --hub-url URL and/or --alerts-out FILE (or - for stdout)")
	}
	if f.alertsOut == "-" && f.eventsOut == "-" {
		return errors.New("--events-out and --alerts-out cannot both be stdout: send one of them to a file")
	}
	var shipCfg *shipConfig
	if sc, err := f.hub.ConfigIfEnabled(); err != nil {
		return err
	} else if sc != nil {
		shipCfg = &shipConfig{*sc}
	}
	maxLine, err := parseSize(f.maxLine)
	if err != nil || maxLine < 1024 {
		return fmt.Errorf("--max-line-bytes %q: give a size of at least 1KiB, e.g. 4MiB", f.maxLine)
	}
	maxBody, err := parseSize(f.maxBody)
	if err != nil || maxBody < 1024 {
		return fmt.Errorf("--webhook-max-body %q: give a size of at least 1KiB, e.g. 32MiB", f.maxBody)
	}
	node := f.node
	if node == "" {
		node = os.Getenv("NODE_NAME")
	}
	if node == "" {
		node, _ = os.Hostname()
	}

	// Rules first: a bad rule file stops the start with its position.
	reloader, err := detect.NewReloader(func() (*detect.RuleSet, error) { return f.rules.load() }, log)
	if err != nil {
		return fmt.Errorf("rules: %w", err)
	}
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	go watchRules(ctx, reloader, f.rules.paths, log)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := audit.NewMetrics(reg)

	var sinks []audit.AlertSink
	if f.alertsOut != "" {
		aw, closeAlerts, err := sensorcmd.OpenAlerts(cmd.OutOrStdout(), f.alertsOut, log)
		if err != nil {
			return err
		}
		defer closeAlerts()
		sinks = append(sinks, aw)
	}
	var onEvent func(*event.Event)
	if f.eventsOut != "" {
		out, closeOut, err := sensorcmd.OpenEvents(cmd.OutOrStdout(), f.eventsOut, log)
		if err != nil {
			return err
		}
		defer closeOut()
		onEvent = func(ev *event.Event) {
			if err := out.Write(ev); err != nil {
				log.Error("writing an audit event failed", "err", err)
			}
		}
	}

	var lookup audit.PodLookup
	if on, err := f.podLookupEnabled(); err != nil {
		return err
	} else if on {
		client, err := f.kubeClient()
		if err != nil {
			return err
		}
		idx := audit.NewPodIndex(client, log)
		go idx.Run(ctx)
		lookup = idx.Lookup
	}

	// The hub delivery: alerts go through the durable outbox (so a hub that
	// cannot be reached loses nothing), the shipper sends them on.
	var delivery *auditDelivery
	if shipCfg != nil {
		ob, err := shipCfg.openOutbox(reg, log)
		if err != nil {
			return err
		}
		sinks = append(sinks, ob)
		mode := "audit-log"
		if f.listen != "" {
			mode = "audit-webhook"
		}
		health := func() store.SensorHealth {
			return store.SensorHealth{Component: store.ComponentAudit, SourceMode: mode, Drops: m.Lost(), RuleSetVersion: reloader.Engine().Version(), SensorVersion: version}
		}
		delivery, err = startAuditDelivery(*shipCfg, ob, node, health, reg, log)
		if err != nil {
			_ = ob.Close()
			return err
		}
		defer delivery.stop()
	}

	pipe, err := audit.NewPipeline(audit.PipelineConfig{Rules: reloader.Engine, Sinks: sinks, LookupPod: lookup,
		Node: node, QueueSize: f.queue, OnEvent: onEvent, Metrics: m, Logger: log})
	if err != nil {
		return err
	}

	if f.metricsAddr != "" {
		stop, err := serveAuditMetrics(f.metricsAddr, reg, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	var wg sync.WaitGroup
	pipeCtx, pipeStop := context.WithCancel(context.Background())
	wg.Add(1)
	go func() {
		defer wg.Done()
		pipe.Run(pipeCtx)
	}()
	// The pipeline stops after its source: what was queued is judged and
	// the last aggregated counts are flushed before the outputs close.
	defer func() {
		pipeStop()
		wg.Wait()
	}()

	if f.log != "" {
		if f.logState != "" {
			if err := os.MkdirAll(filepath.Dir(f.logState), 0o700); err != nil {
				return fmt.Errorf("--log-state %s: %w (pass a writable path, or --log-state \"\" to keep no position)", f.logState, err)
			}
		}
		fw, err := audit.NewFollower(audit.FollowerConfig{Path: f.log, StateFile: f.logState, FromEnd: f.fromEnd,
			MaxLine: maxLine, Metrics: m, Logger: log})
		if err != nil {
			return err
		}
		log.Info("following the audit log", "path", f.log, "state", f.logState, "rules", len(reloader.Engine().Rules()))
		return fw.Run(ctx, pipe.HandleLine)
	}
	return f.serveWebhook(ctx, pipe, m, int64(maxBody), log)
}

func (f *auditFlags) podLookupEnabled() (bool, error) {
	switch f.podLookup {
	case "on":
		return true, nil
	case "off":
		return false, nil
	case "auto", "":
		return f.kubeconfig != "" || os.Getenv("KUBERNETES_SERVICE_HOST") != "", nil
	}
	return false, fmt.Errorf("--pod-lookup %q: use auto, on or off", f.podLookup)
}

func (f *auditFlags) kubeClient() (kubernetes.Interface, error) {
	var cfg *rest.Config
	var err error
	if f.kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", f.kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("--pod-lookup: %w (outside a pod pass --kubeconfig FILE, or --pod-lookup off)", err)
	}
	cfg.UserAgent = "vigil-audit/" + version
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("--pod-lookup: Kubernetes client: %w", err)
	}
	return client, nil
}

func (f *auditFlags) serveWebhook(ctx context.Context, pipe *audit.Pipeline, m *audit.Metrics, maxBody int64, log *slog.Logger) error {
	if f.tlsCert == "" || f.tlsKey == "" {
		return errors.New("--webhook-listen needs --tls-cert and --tls-key: the API server sends audit events (with request bodies and tokens' identities) only over HTTPS")
	}
	cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
	if err != nil {
		return fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	var token string
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return fmt.Errorf("--webhook-token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return fmt.Errorf("--webhook-token-file %s is empty: put the token of the API server's webhook kubeconfig in it", f.tokenFile)
		}
	}
	var pool *x509.CertPool
	if f.clientCA != "" {
		b, err := os.ReadFile(f.clientCA)
		if err != nil {
			return fmt.Errorf("--webhook-client-ca: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("--webhook-client-ca %s holds no PEM certificate", f.clientCA)
		}
	}
	if len(f.clientNames) > 0 && pool == nil {
		return errors.New("--webhook-client-name needs --webhook-client-ca (the CA that signs the API server's client certificate)")
	}
	h, err := audit.NewWebhook(audit.WebhookConfig{Token: token, RequireClientCert: pool != nil, ClientNames: f.clientNames,
		MaxBody: maxBody, Deliver: pipe.Offer, Metrics: m, Logger: log})
	if err != nil {
		return fmt.Errorf("%w", err)
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("--webhook-listen %s: %w", f.listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	srv := &http.Server{Handler: mux, TLSConfig: audit.ServerTLS(cert, pool), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	log.Info("serving the audit webhook", "addr", ln.Addr().String(), "token", token != "", "client_ca", f.clientCA)
	if f.listenStarted != nil {
		f.listenStarted(ln.Addr())
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("audit webhook server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("audit webhook did not shut down cleanly", "err", err)
	}
	return nil
}

func serveAuditMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "addr", addr, "err", err)
		}
	}()
	log.Info("serving metrics", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}

// auditDelivery ships the audit collector's alerts from the outbox to the
// hub, and reports its health (source mode audit-log or audit-webhook, the
// audit events it lost, the alerts its outbox dropped): the hub keeps it
// beside the node's sensor's and raises vigil.audit/ alerts for losses.
type auditDelivery struct {
	d *sensorcmd.Delivery
}

func startAuditDelivery(c shipConfig, obx *outbox.Outbox, node string, health func() store.SensorHealth, reg prometheus.Registerer, log *slog.Logger) (*auditDelivery, error) {
	sc := c.ShipConfig
	sc.UserAgent = "vigil-audit/" + version
	d, err := sensorcmd.StartDelivery(sc, obx, node, health, reg, log)
	if err != nil {
		return nil, err
	}
	return &auditDelivery{d: d}, nil
}

func (a *auditDelivery) stop() { a.d.Stop() }
