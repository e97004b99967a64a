package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/kube"
	"github.com/vigil-sec/vigil/internal/pki"
	"github.com/vigil-sec/vigil/internal/store"
)

type preflightFlags struct {
	tokenFile, tokenKind, clusterID string
	inCluster                       bool
	image                           string
	timeout                         time.Duration
}

func newPreflightCmd() *cobra.Command {
	f := &preflightFlags{}
	r := &remoteFlags{}
	k := &kubeFlags{}
	cmd := &cobra.Command{
		Use:   "preflight [--hub URL] [--in-cluster]",
		Short: "Check that the hub is reachable: DNS, TCP, TLS (chain, name), an authenticated request, proxies",
		Long: `Check every network step agent and sensor need to reach the hub, and name the one that fails
with its likely cause: proxy detection (HTTPS_PROXY/NO_PROXY), DNS resolution, TCP connection, TLS
(certificate chain against the pinned CA, and the name), the hub answering /healthz, and an
authenticated request with the token (a user token from this workstation; with --in-cluster the
agent's own token). The agent's heartbeat and extension endpoints and the sensor's ingest endpoints
are on the same hub URL.

--in-cluster runs the same checks from a short-lived Job in vigil-system, with the agent's hub URL,
CA and token, and prints its result: the view from the cluster's network.`,
		Example: "  vigil preflight\n  vigil preflight --hub https://hub.example:8443 --ca ca.crt\n  vigil preflight --in-cluster --kube-context prod",
		Args:    usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.inCluster {
				return preflightInCluster(cmd, f, k)
			}
			return preflightHere(cmd, f, r)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.tokenFile, "token-file", "", "read the token from this file (instead of --token or the saved one)")
	fl.StringVar(&f.tokenKind, "token-kind", "user", "kind of the token: user, agent (needs --cluster-id) or sensor (needs --cluster-id)")
	fl.StringVar(&f.clusterID, "cluster-id", "", "the cluster's ARM id, for agent and sensor tokens")
	fl.BoolVar(&f.inCluster, "in-cluster", false, "run the checks from a Job in the cluster (vigil-system), with the agent's configuration")
	fl.StringVar(&f.image, "image", "", "image of the --in-cluster Job (default: the agent's)")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "timeout of each network step")
	r.register(fl)
	k.register(fl)
	return cmd
}

func preflightHere(cmd *cobra.Command, f *preflightFlags, r *remoteFlags) error {
	ctx := cmd.Context()
	hub := r.hub
	var saved hubclient.Config
	if c, err := hubclient.Load(); err == nil {
		saved = c
		if hub == "" {
			hub = c.Hub
		}
	}
	if hub == "" {
		return flagUsage("no hub: pass --hub URL (or run `vigil login` first)")
	}
	hubURL, err := hubclient.NormalizeHubURL(hub)
	if err != nil {
		return clio.Errorf(clio.ExitUsage, "--hub: %v", err)
	}
	caPEM, err := r.hubCAPEM(hubURL)
	if err != nil {
		return err
	}
	token := r.token
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return clio.Errorf(clio.ExitUsage, "--token-file: %v", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		if s, err := hubclient.NormalizeHubURL(saved.Hub); err == nil && s == hubURL {
			token = saved.Token
		}
	}
	u, _ := url.Parse(hubURL)
	port := u.Port()
	if port == "" {
		port = "443"
	}
	host := u.Hostname()
	addr := net.JoinHostPort(host, port)
	c := &checklist{w: cmd.OutOrStdout()}
	fmt.Fprintf(cmd.OutOrStdout(), "preflight for the hub at %s (agent: /ingest/v1/heartbeat, /ingest/v1/extensionStatus, extensions API; sensor: /ingest/v1/alerts, /ingest/v1/health)\n", hubURL)
	start := time.Now()

	// Proxy.
	var proxyURL *url.URL
	c.run("proxy", func() (string, string, error) {
		req, _ := http.NewRequest(http.MethodGet, hubURL, nil)
		p, err := http.ProxyFromEnvironment(req)
		if err != nil {
			return "", "fix HTTPS_PROXY (a URL such as http://proxy:3128)", fmt.Errorf("HTTPS_PROXY is invalid: %w", err)
		}
		if p == nil {
			return "none (direct connection" + prefixIf("; NO_PROXY=", os.Getenv("NO_PROXY")) + ")", "", nil
		}
		proxyURL = p
		return "via " + p.Redacted() + " (HTTPS_PROXY); the TCP check below is to the proxy", "", nil
	})
	dialHost, dialAddr := host, addr
	if proxyURL != nil {
		pp := proxyURL.Port()
		if pp == "" {
			pp = map[string]string{"https": "443"}[proxyURL.Scheme]
			if pp == "" {
				pp = "80"
			}
		}
		dialHost, dialAddr = proxyURL.Hostname(), net.JoinHostPort(proxyURL.Hostname(), pp)
	}
	dnsOK := c.run("DNS "+dialHost, func() (string, string, error) {
		if ip := net.ParseIP(dialHost); ip != nil {
			return "an IP address, nothing to resolve", "", nil
		}
		dctx, cancel := context.WithTimeout(ctx, f.timeout)
		defer cancel()
		ips, err := net.DefaultResolver.LookupHost(dctx, dialHost)
		if err != nil {
			return "", "check the name's spelling and that this network's DNS serves it (/etc/resolv.conf; in a cluster, CoreDNS upstreams)", fmt.Errorf("cannot resolve %s: %w", dialHost, err)
		}
		return strings.Join(ips, ", "), "", nil
	})
	tcpOK := dnsOK && c.run("TCP "+dialAddr, func() (string, string, error) {
		d := net.Dialer{Timeout: f.timeout}
		conn, err := d.DialContext(ctx, "tcp", dialAddr)
		if err != nil {
			return "", tcpFix(err), fmt.Errorf("connect to %s: %w", dialAddr, err)
		}
		defer conn.Close()
		return "connected from " + conn.LocalAddr().String(), "", nil
	})
	if !dnsOK {
		c.skip("TCP "+dialAddr, "DNS failed")
	}
	var tlsCfg *tls.Config
	if caPEM != "" {
		tlsCfg, err = pki.ClientTLS([]byte(caPEM))
		if err != nil {
			return clio.Errorf(clio.ExitUsage, "the hub CA: %v", err)
		}
	} else {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tlsOK := false
	if tcpOK && proxyURL == nil {
		tlsOK = c.run("TLS "+addr, func() (string, string, error) {
			cfg := tlsCfg.Clone()
			cfg.ServerName = host
			d := tls.Dialer{NetDialer: &net.Dialer{Timeout: f.timeout}, Config: cfg}
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return "", tlsFix(err, host, caPEM != ""), fmt.Errorf("TLS handshake with %s: %w", addr, err)
			}
			defer conn.Close()
			st := conn.(*tls.Conn).ConnectionState()
			leaf := st.PeerCertificates[0]
			return fmt.Sprintf("certificate %q issued by %q, valid until %s, %s", leaf.Subject.CommonName, leaf.Issuer.CommonName,
				leaf.NotAfter.UTC().Format(time.DateOnly), map[bool]string{true: "chain verified against the pinned CA", false: "chain verified against the system's roots"}[caPEM != ""]), "", nil
		})
	} else if tcpOK {
		tlsOK = true // through a proxy the HTTP step below performs the handshake
	} else {
		c.skip("TLS "+addr, "TCP failed")
	}
	if !tlsOK {
		c.skip("hub answers /healthz", "TLS failed")
		c.skip("authenticated request", "TLS failed")
	} else {
		cl, err := hubclient.New(hubclient.Config{Hub: hubURL, Token: token, CAPEM: caPEM}, hubclient.WithTimeout(f.timeout), hubclient.WithUserAgent("vigil-preflight/"+version))
		if err != nil {
			return err
		}
		defer cl.CloseIdleConnections()
		healthy := c.run("hub answers /healthz", func() (string, string, error) {
			if err := cl.Do(ctx, http.MethodGet, "/healthz", nil, nil, nil); err != nil {
				fix := "is this URL a vigil hub? check the port and that nothing (a proxy, a load balancer) answers in its place"
				var ue *hubclient.UnreachableError
				if errors.As(err, &ue) {
					fix = tlsFix(err, host, caPEM != "")
				}
				return "", fix, err
			}
			return "ok", "", nil
		})
		if !healthy {
			c.skip("authenticated request", "the hub did not answer")
		} else {
			c.run("authenticated request ("+f.tokenKind+" token)", func() (string, string, error) {
				return authCheck(ctx, cl, f, token)
			})
		}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "preflight took %s\n", time.Since(start).Round(100*time.Millisecond))
	if c.failed > 0 {
		return clio.Errorf(clio.ExitUnreachable, "preflight failed for the hub at %s: see the ✗ step above", hubURL)
	}
	return nil
}

func authCheck(ctx context.Context, cl *hubclient.Client, f *preflightFlags, token string) (string, string, error) {
	if token == "" {
		return "", "pass --token, --token-file, or run `vigil login`", errors.New("no token to test")
	}
	switch f.tokenKind {
	case store.TokenUser:
		if err := cl.CheckAccess(ctx, ""); err != nil {
			return "", "the token is unknown, revoked or expired: create a new one (`vigil hub token create`) and log in again", err
		}
		return "the hub accepted the user token", "", nil
	case store.TokenAgent:
		if f.clusterID == "" {
			return "", "pass --cluster-id", errors.New("an agent token needs --cluster-id")
		}
		if _, err := cl.ListExtensionsByClusterID(ctx, f.clusterID); err != nil {
			return "", "the agent token is unknown, revoked or for another cluster: run `vigil connect` again to issue a new one", err
		}
		return "the hub accepted the agent token (read the cluster's extensions)", "", nil
	case store.TokenSensor:
		if f.clusterID == "" {
			return "", "pass --cluster-id", errors.New("a sensor token needs --cluster-id")
		}
		// An empty batch: authenticated and authorised, stores nothing.
		err := cl.Do(ctx, http.MethodPost, "/ingest/v1/alerts", nil, map[string]any{"cluster": f.clusterID, "node": "preflight", "batchId": "preflight-" + randomSuffix(), "alerts": []any{}}, nil)
		if err != nil {
			return "", "the sensor token is unknown, revoked or for another cluster: recreate the sensor extension", err
		}
		return "the hub accepted the sensor token (empty ingest batch)", "", nil
	}
	return "", "", clio.Errorf(clio.ExitUsage, "--token-kind %q: use user, agent or sensor", f.tokenKind)
}

func tcpFix(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "nothing listens there: is the hub running, and is this its port (vigil hub --listen)? A hub on 127.0.0.1 is not reachable from other machines"
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return "no route to the host: check the address and this network's routing"
	case errors.As(err, &ne) && ne.Timeout():
		return "no answer: a firewall or network policy probably drops the traffic; allow egress to the hub's address and port"
	}
	return "check the address and the network path"
}

func tlsFix(err error, host string, pinned bool) string {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &hn):
		return fmt.Sprintf("the hub's certificate is not valid for %q: use the name/IP in its certificate, or restart the hub with --tls-san %s", host, host)
	case errors.As(err, &ua):
		if pinned {
			return "the certificate is not signed by the pinned CA: pass the hub's own ca.crt (--ca), or a TLS-intercepting proxy sits in between (exempt the hub in NO_PROXY / the proxy)"
		}
		return "the certificate is not signed by a CA this system trusts: pass the hub's ca.crt with --ca"
	case errors.As(err, &ci):
		return "the certificate is invalid (" + ci.Error() + "): check the clocks and renew the hub's certificate"
	case strings.Contains(err.Error(), "first record does not look like a TLS handshake"):
		return "the port speaks plain HTTP, not TLS: use the hub's HTTPS port"
	}
	return "check that the port is the hub's HTTPS port"
}

// preflightInCluster runs `vigil preflight` from a Job with the agent's
// hub URL, CA and token.
func preflightInCluster(cmd *cobra.Command, f *preflightFlags, k *kubeFlags) error {
	ctx := cmd.Context()
	kc, err := k.load()
	if err != nil {
		return err
	}
	dep, err := kc.Kube.AppsV1().Deployments("vigil-system").Get(ctx, "vigil-agent", metav1.GetOptions{})
	if err != nil {
		return clio.Errorf(clio.ExitNotFound, "read the agent's configuration (Deployment vigil-system/vigil-agent): %v; connect the cluster first (`vigil connect`)", err)
	}
	ctr := dep.Spec.Template.Spec.Containers[0]
	hubURL, clusterID := argValue(ctr.Args, "--hub-url"), argValue(ctr.Args, "--cluster-id")
	image := f.image
	if image == "" {
		image = ctr.Image
	}
	args := []string{"preflight", "--hub", hubURL, "--token-file", "/var/run/vigil/agent/token", "--token-kind", "agent", "--cluster-id", clusterID,
		"--timeout", f.timeout.String()}
	if argValue(ctr.Args, "--hub-ca") != "" {
		args = append(args, "--ca", "/var/run/vigil/agent/ca.crt")
	}
	name := "vigil-preflight-" + randomSuffix()
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "vigil-system", Labels: map[string]string{"app.kubernetes.io/part-of": "vigil", "app.kubernetes.io/name": "vigil-preflight"}},
		Spec: batchv1.JobSpec{BackoffLimit: ptrTo(int32(0)), TTLSecondsAfterFinished: ptrTo(int32(300)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/name": "vigil-preflight", "vigil.dev/preflight": name}},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, AutomountServiceAccountToken: ptrTo(false),
					SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptrTo(true), RunAsUser: ptrTo(int64(65532))},
					Containers: []corev1.Container{{Name: "preflight", Image: image, ImagePullPolicy: ctr.ImagePullPolicy, Args: args, Env: ctr.Env,
						VolumeMounts: []corev1.VolumeMount{{Name: "credentials", MountPath: "/var/run/vigil/agent", ReadOnly: true}}}},
					Volumes: []corev1.Volume{{Name: "credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "vigil-agent"}}}},
				}}},
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "running preflight from Job vigil-system/%s (hub %s)\n", name, hubURL)
	if _, err := kc.Kube.BatchV1().Jobs("vigil-system").Create(ctx, job, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create the preflight Job: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		bg := metav1.DeletePropagationBackground
		_ = kc.Kube.BatchV1().Jobs("vigil-system").Delete(dctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
	}()
	deadline := time.Now().Add(2*time.Minute + 6*f.timeout)
	for {
		j, err := kc.Kube.BatchV1().Jobs("vigil-system").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read the preflight Job: %w", err)
		}
		done := j.Status.Succeeded > 0 || j.Status.Failed > 0
		pods, _ := kc.Kube.CoreV1().Pods("vigil-system").List(ctx, metav1.ListOptions{LabelSelector: "vigil.dev/preflight=" + name})
		if !done && pods != nil {
			for i := range pods.Items {
				if p := kube.PodProblem(&pods.Items[i]); containsAnyStr(p, fatalPod) {
					return clio.Errorf(clio.ExitGeneral, "the preflight pod cannot start: %s\n%s", p, podHint(p))
				}
			}
		}
		if done {
			if pods != nil {
				for _, p := range pods.Items {
					b, err := kc.Kube.CoreV1().Pods("vigil-system").GetLogs(p.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
					if err == nil {
						cmd.OutOrStdout().Write(b)
					}
				}
			}
			if j.Status.Succeeded > 0 {
				return nil
			}
			return clio.Errorf(clio.ExitUnreachable, "preflight from the cluster failed: see the ✗ step above")
		}
		if time.Now().After(deadline) {
			return clio.Errorf(clio.ExitGeneral, "the preflight Job did not finish in time: kubectl -n vigil-system describe job %s", name)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// argValue finds --flag=value or --flag value in args.
func argValue(args []string, flag string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
