package simulate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// KubeNamespace is the namespace a cluster run creates (and deletes);
// KubeConfig.Namespace may name another one starting with it.
const KubeNamespace = "vigil-simulation"

// kubeRunLabel marks everything a cluster run creates.
const kubeRunLabel = "vigil.io/simulation"

// Paths and names inside the simulation pods.
const (
	kubeVigilPath = "/vigil" // vigil's image entrypoint
	kubePayload   = "/bin/busybox"
	kubeAttacker  = "attacker"
	kubeVictim    = "victim"
	// kubeVictimAddr is the victim's second address, link-local and on
	// its own interface: the attacker's relay (started before the victim
	// has a pod IP) reaches it through an on-link route, by ARP on the
	// pod network's segment; it never leaves the node.
	kubeVictimAddr = "169.254.77.10"
)

// KubeConfig configures a KubeRunner.
type KubeConfig struct {
	// Config reaches the cluster's API server (from the kubeconfig and
	// --kube-context).
	Config *rest.Config
	// Image is vigil's container image the pods run (the attacker's
	// servers, the scanner stand-in, busybox's httpd and applets).
	Image string
	// Namespace is the run's namespace: KubeNamespace (default) or a name
	// starting with "vigil-simulation-". It must not exist yet.
	Namespace string
	// ReadyTimeout bounds how long the pods may take to run (default 3m).
	ReadyTimeout time.Duration
	Logger       *slog.Logger
}

// KubeRunner runs the victim and the attacker as pods in their own
// namespace of a Kubernetes cluster. The victim (busybox httpd with the CGI
// web shell, running as uid 33) resolves names through the attacker's stub
// DNS (dnsPolicy None) and reaches the metadata stub (169.254.169.254) and
// the threat-intel test address through a route via the attacker's pod IP,
// which holds both addresses on its own interface: no packet to them
// leaves the node. Commands are delivered through the API server's pod
// proxy to the attacker's relay, which posts them to the victim's web shell
// at the victim's link-local second address (kubeVictimAddr).
type KubeRunner struct {
	cfg    KubeConfig
	client kubernetes.Interface
	proxy  rest.Interface // no client timeout: Deliver bounds calls by ctx
	ns     string

	created    bool // the namespace is ours to delete
	attackerIP string
	victimIP   string
	rewrite    *strings.Replacer
}

// NewKubeRunner checks the configuration and prepares a run; nothing is
// created in the cluster before Start.
func NewKubeRunner(cfg KubeConfig) (*KubeRunner, error) {
	if cfg.Config == nil {
		return nil, errors.New("no Kubernetes configuration: pass --kubeconfig/--kube-context for the cluster to run the simulation in")
	}
	if cfg.Image == "" {
		return nil, errors.New("no image for the simulation's pods: give vigil's image (e.g. vigil.local/vigil:VERSION, built with hack/image) with --image")
	}
	if cfg.Namespace == "" {
		cfg.Namespace = KubeNamespace
	}
	if cfg.Namespace != KubeNamespace && !strings.HasPrefix(cfg.Namespace, KubeNamespace+"-") {
		return nil, fmt.Errorf("namespace %q: the simulation's namespace must be %s or start with %s- (it is deleted afterwards)", cfg.Namespace, KubeNamespace, KubeNamespace)
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 3 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	rc := rest.CopyConfig(cfg.Config)
	if rc.Timeout == 0 {
		rc.Timeout = 30 * time.Second
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", rc.Host, err)
	}
	pc := rest.CopyConfig(cfg.Config)
	pc.Timeout = 0
	proxy, err := kubernetes.NewForConfig(pc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", pc.Host, err)
	}
	return &KubeRunner{cfg: cfg, client: client, proxy: proxy.CoreV1().RESTClient(), ns: cfg.Namespace}, nil
}

// ID is the run's namespace.
func (r *KubeRunner) ID() string { return r.ns }

// Tools implements Runner: vigil's image has busybox's applets and vigil
// itself (the scanner stand-in), no curl, nmap, dash or bash.
func (r *KubeRunner) Tools() Tools {
	return Tools{NetScan: kubeVigilPath + " simulate netscan"}
}

// Scope implements Runner: the sensor puts the pods' namespace on alerts.
func (r *KubeRunner) Scope() Scope { return Scope{Namespace: r.ns} }

// Start implements Runner.
func (r *KubeRunner) Start(ctx context.Context) error {
	log := r.cfg.Logger
	nsc := r.client.CoreV1().Namespaces()
	if existing, err := nsc.Get(ctx, r.ns, metav1.GetOptions{}); err == nil {
		if existing.DeletionTimestamp != nil {
			return fmt.Errorf("namespace %s is still being deleted (a previous simulation's): wait for `kubectl get namespace %s` to report NotFound, or use --namespace", r.ns, r.ns)
		}
		return fmt.Errorf("namespace %s already exists: another simulation may be running; if not, delete it (kubectl delete namespace %s) or choose another with --namespace", r.ns, r.ns)
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("look up namespace %s at %s: %w (is the cluster reachable with this kubeconfig and context?)", r.ns, r.cfg.Config.Host, err)
	}
	if _, err := nsc.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: r.ns, Labels: map[string]string{kubeRunLabel: "true"},
	}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s: %w", r.ns, err)
	}
	r.created = true
	log.Debug("namespace created", "namespace", r.ns)

	apiSvc, err := r.client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read the kubernetes service (default/kubernetes) for the API server's address: %w", err)
	}
	if err := r.waitDefaultServiceAccount(ctx); err != nil {
		return err
	}
	if _, err := r.client.CoreV1().ConfigMaps(r.ns).Create(ctx, r.victimWebConfigMap(), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create the victim's web root (configmap %s/victim-web): %w", r.ns, err)
	}
	victimURL := fmt.Sprintf("http://%s:%d/cgi-bin/shell.cgi", kubeVictimAddr, webPort)

	if _, err := r.client.CoreV1().Pods(r.ns).Create(ctx, r.attackerPod(victimURL), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create the attacker pod %s/%s: %w", r.ns, kubeAttacker, err)
	}
	att, err := r.waitPodReady(ctx, kubeAttacker)
	if err != nil {
		return fmt.Errorf("start the attacker: %w", err)
	}
	r.attackerIP = att.Status.PodIP
	log.Debug("attacker running", "ip", r.attackerIP)

	if _, err := r.client.CoreV1().Pods(r.ns).Create(ctx, r.victimPod(r.attackerIP), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create the victim pod %s/%s: %w", r.ns, kubeVictim, err)
	}
	vic, err := r.waitPodReady(ctx, kubeVictim)
	if err != nil {
		return fmt.Errorf("start the victim: %w", err)
	}
	r.victimIP = vic.Status.PodIP
	scan, err := r.scanPrefix(ctx, vic)
	if err != nil {
		return err
	}
	log.Debug("victim running", "ip", r.victimIP, "scan", scan)
	r.rewrite = kubeRewriter(r.attackerIP, r.victimIP, apiSvc.Spec.ClusterIP, scan)
	return r.waitRelay(ctx)
}

// kubeRewriter maps the local simulation network's addresses in the
// steps' commands to the cluster's: the attacker's and victim's pod IPs,
// the API service's address, the pod subnet to scan; and the API server's
// name (the stub DNS answers it with the local address) to the pod's
// $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT, so the recon step asks
// the real API server (the URL is single-quoted in the command: the
// variables are spliced in double quotes). busybox 1.35's wget (vigil's
// image) crashes with -T, so the downloads go without it: every address
// they reach answers inside the simulation or refuses at once.
func kubeRewriter(attacker, victim, apiService, scan string) *strings.Replacer {
	return strings.NewReplacer(
		"wget -q -T 5 ", "wget -q ",
		"https://kubernetes.default.svc", `https://'"$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"'`,
		subnetCIDR, scan,
		victimIP, victim,
		attackerIP, attacker,
		apiServiceIP, apiService,
	)
}

// kubeAppletDirs are the directories of the steps' busybox applets in
// vigil's image, which installs each applet at its `busybox --list-full`
// path (/usr/bin/id, /sbin/ip ...); the ones in /bin are not listed.
var kubeAppletDirs = map[string]string{
	"env": "/usr/bin", "find": "/usr/bin", "head": "/usr/bin", "id": "/usr/bin", "nslookup": "/usr/bin",
	"wget": "/usr/bin", "whoami": "/usr/bin", "ip": "/sbin", "modprobe": "/sbin", "httpd": "/usr/sbin",
}

var binApplet = regexp.MustCompile(`(^|[;|&(]\s*)/bin/([a-z][a-z0-9]*)\b`)

// kubeAppletPaths rewrites the applets a step names by path (/bin/id, so
// that busybox sh execs them) to their path in vigil's image.
func kubeAppletPaths(cmd string) string {
	return binApplet.ReplaceAllStringFunc(cmd, func(m string) string {
		sub := binApplet.FindStringSubmatch(m)
		dir, ok := kubeAppletDirs[sub[2]]
		if !ok {
			return m
		}
		return sub[1] + dir + "/" + sub[2]
	})
}

// scanPrefix is the pod subnet the recon step scans: the victim node's pod
// CIDR when it is a /24 or smaller, else the /24 holding the victim's IP
// (a few ports of 256 addresses). Never the service range: unknown service
// addresses would be routed off the node.
func (r *KubeRunner) scanPrefix(ctx context.Context, victim *corev1.Pod) (string, error) {
	ip, err := netip.ParseAddr(victim.Status.PodIP)
	if err != nil || !ip.Is4() {
		return "", fmt.Errorf("the victim's pod IP %q is not an IPv4 address: the cluster simulation needs IPv4 pod addresses", victim.Status.PodIP)
	}
	if node, err := r.client.CoreV1().Nodes().Get(ctx, victim.Spec.NodeName, metav1.GetOptions{}); err == nil {
		if p, err := netip.ParsePrefix(node.Spec.PodCIDR); err == nil && p.Bits() >= 24 && p.Contains(ip) {
			return p.Masked().String(), nil
		}
	}
	p, _ := ip.Prefix(24)
	return p.String(), nil
}

func (r *KubeRunner) waitDefaultServiceAccount(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, err := r.client.CoreV1().ServiceAccounts(r.ns).Get(ctx, "default", metav1.GetOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) && ctx.Err() == nil {
			return fmt.Errorf("read the default service account of %s: %w", r.ns, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s got no default service account within 30s: is the controller manager running? %w", r.ns, context.Cause(ctx))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitPodReady waits for the pod to run and be ready, failing at once with
// the reason when it cannot start.
func (r *KubeRunner) waitPodReady(ctx context.Context, name string) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, r.cfg.ReadyTimeout, fmt.Errorf("pod %s/%s not ready within %v", r.ns, name, r.cfg.ReadyTimeout))
	defer cancel()
	var last string
	for {
		pod, err := r.client.CoreV1().Pods(r.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("read pod %s/%s: %w", r.ns, name, err)
		}
		if err == nil {
			if problem := podProblem(pod); problem != "" {
				return nil, fmt.Errorf("pod %s/%s cannot start: %s", r.ns, name, problem)
			}
			last = podState(pod)
			if pod.Status.Phase == corev1.PodRunning && pod.Status.PodIP != "" {
				for _, c := range pod.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
						return pod, nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (%s; kubectl -n %s describe pod %s shows the events)", context.Cause(ctx), last, r.ns, name)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// podProblem names why a pod will not start (empty if it may still).
func podProblem(pod *corev1.Pod) string {
	if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		return fmt.Sprintf("it finished (%s): %s", pod.Status.Phase, podState(pod))
	}
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, cs := range statuses {
		if w := cs.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName":
				return fmt.Sprintf("image %s is not on the node (%s: %s): build and import vigil's image (hack/image) or pass --image with one the node has", cs.Image, w.Reason, w.Message)
			case "CrashLoopBackOff", "CreateContainerError", "CreateContainerConfigError", "RunContainerError":
				return fmt.Sprintf("container %s: %s: %s", cs.Name, w.Reason, w.Message)
			}
		}
		if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
			return fmt.Sprintf("container %s exited %d (%s): %s", cs.Name, t.ExitCode, t.Reason, strings.TrimSpace(t.Message))
		}
	}
	return ""
}

func podState(pod *corev1.Pod) string {
	parts := []string{"phase " + string(pod.Status.Phase)}
	for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		switch {
		case cs.State.Waiting != nil:
			parts = append(parts, fmt.Sprintf("%s waiting: %s", cs.Name, cs.State.Waiting.Reason))
		case cs.State.Running != nil:
			parts = append(parts, cs.Name+" running")
		case cs.State.Terminated != nil:
			parts = append(parts, fmt.Sprintf("%s exited %d", cs.Name, cs.State.Terminated.ExitCode))
		}
	}
	return strings.Join(parts, ", ")
}

// waitRelay waits until the attacker's relay answers through the API
// server (running nothing in the victim, which would raise alerts before
// the first step).
func (r *KubeRunner) waitRelay(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var lastErr error
	for {
		_, err := r.relay(ctx, "GET", "healthz", "")
		if err == nil {
			return nil
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("the attacker's relay did not answer through the API server's pod proxy within 30s: %w", lastErr)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// relay calls the attacker's command relay through the API server's pod
// proxy (works wherever the API server can reach pods; no port-forward).
func (r *KubeRunner) relay(ctx context.Context, method, path, body string) (string, error) {
	req := r.proxy.Verb(method).Namespace(r.ns).Resource("pods").
		Name(fmt.Sprintf("%s:%d", kubeAttacker, controlPort)).SubResource("proxy", path)
	if body != "" {
		req = req.Body([]byte(body)).SetHeader("Content-Type", "text/plain")
	}
	res := req.Do(ctx)
	var code int
	res.StatusCode(&code)
	out, err := res.Raw()
	if code == 200 {
		return string(out), nil
	}
	if code == 0 {
		return "", fmt.Errorf("reach the attacker's relay through the API server %s: %w", r.cfg.Config.Host, err)
	}
	msg := strings.TrimSpace(string(out))
	if msg == "" && err != nil {
		msg = err.Error()
	}
	return msg, fmt.Errorf("the attacker's relay answered %d: %s", code, msg)
}

// Deliver implements Runner: the attacker's relay posts the command
// (with the local network's addresses rewritten to the cluster's) to the
// victim's web shell. A relay that could not connect to the victim at all
// is retried for a few seconds: the command did not run.
func (r *KubeRunner) Deliver(ctx context.Context, command string) (string, error) {
	if r.rewrite == nil {
		return "", errors.New("the simulation was not started")
	}
	command = kubeAppletPaths(r.rewrite.Replace(command))
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := r.relay(ctx, "POST", "deliver", command)
		if err == nil {
			return out, nil
		}
		if !strings.Contains(out, "dial tcp") || time.Now().After(deadline) || ctx.Err() != nil {
			return out, fmt.Errorf("the attacker could not drive the web shell: %w", err)
		}
		select {
		case <-ctx.Done():
			return "", context.Cause(ctx)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Close implements Runner: deleting the namespace removes the pods and
// the configmap; Close waits until it is gone (up to 2
// minutes) so that a next run can use the same name.
func (r *KubeRunner) Close() error {
	if !r.created {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	zero := int64(0)
	bg := metav1.DeletePropagationBackground
	err := r.client.CoreV1().Namespaces().Delete(ctx, r.ns, metav1.DeleteOptions{GracePeriodSeconds: &zero, PropagationPolicy: &bg})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete the simulation's namespace %s: %w (delete it with kubectl delete namespace %s)", r.ns, err, r.ns)
	}
	for {
		_, err := r.client.CoreV1().Namespaces().Get(ctx, r.ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			r.created = false
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s is still being deleted after 2 minutes (kubectl get namespace %s -o yaml shows what holds it)", r.ns, r.ns)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (r *KubeRunner) labels(app string) map[string]string {
	return map[string]string{kubeRunLabel: "true", "app": app}
}

func (r *KubeRunner) victimWebConfigMap() *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "victim-web", Namespace: r.ns, Labels: r.labels(kubeVictim)},
		Data: map[string]string{
			"shell.cgi":   webShellCGI,
			"credentials": "[default]\naws_access_key_id = AKIAVIGILSIMULATION0\naws_secret_access_key = vigil-simulation-fake-secret\n",
			"index.html":  "<html><body>vigil simulation victim</body></html>\n",
		},
	}
}

func ptrTo[T any](v T) *T { return &v }

// netAdmin is the security context of the init containers that set up
// addresses and routes: root with NET_ADMIN only.
func netAdmin() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsUser:                ptrTo(int64(0)),
		AllowPrivilegeEscalation: ptrTo(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_ADMIN"}},
	}
}

// attackerPod serves the fake miner, the metadata stub, the threat-intel
// beacon, the stub DNS and the command relay. Its init container puts the
// metadata and threat-intel test addresses on its own interface and routes
// the victim's link-local address on-link (ARP on the pod segment).
func (r *KubeRunner) attackerPod(victimURL string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: kubeAttacker, Namespace: r.ns, Labels: r.labels(kubeAttacker)},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptrTo(int64(0)),
			AutomountServiceAccountToken:  ptrTo(false),
			EnableServiceLinks:            ptrTo(false),
			InitContainers: []corev1.Container{{
				Name: "stub-addresses", Image: r.cfg.Image, ImagePullPolicy: corev1.PullNever,
				Command:         []string{"/bin/sh", "-c", fmt.Sprintf("ip addr add %s/32 dev eth0 && ip addr add %s/32 dev eth0 && ip route add %s/32 dev eth0", imdsIP, tiIP, kubeVictimAddr)},
				SecurityContext: netAdmin(),
			}},
			Containers: []corev1.Container{{
				Name: kubeAttacker, Image: r.cfg.Image, ImagePullPolicy: corev1.PullNever,
				Command: []string{kubeVigilPath, "simulate", "attacker-server", "--victim-url", victimURL, "--payload", kubePayload},
				SecurityContext: &corev1.SecurityContext{
					RunAsUser:                ptrTo(int64(0)),
					AllowPrivilegeEscalation: ptrTo(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"NET_BIND_SERVICE"}},
				},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(controlPort)}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
}

// victimPod is busybox httpd with the CGI web shell as uid 33. Its init
// container adds the victim's link-local address and routes the metadata and threat-intel test addresses to the
// attacker's pod IP (on the pod network's own segment); its DNS is the
// attacker's stub.
func (r *KubeRunner) victimPod(attacker string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: kubeVictim, Namespace: r.ns, Labels: r.labels(kubeVictim)},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: ptrTo(int64(0)),
			DNSPolicy:                     corev1.DNSNone,
			DNSConfig: &corev1.PodDNSConfig{
				Nameservers: []string{attacker},
				Options:     []corev1.PodDNSConfigOption{{Name: "timeout", Value: ptrTo("2")}, {Name: "attempts", Value: ptrTo("1")}},
			},
			InitContainers: []corev1.Container{{
				Name: "stub-routes", Image: r.cfg.Image, ImagePullPolicy: corev1.PullNever,
				// No "onlink": if the attacker is not on this pod's own
				// segment the route fails instead of sending the packets
				// to the node (and maybe off it).
				Command: []string{"/bin/sh", "-c", fmt.Sprintf("ip addr add %s/32 dev eth0 && ip route add %s/32 via %s && ip route add %s/32 via %s",
					kubeVictimAddr, imdsIP, attacker, tiIP, attacker)},
				SecurityContext: netAdmin(),
			}},
			Containers: []corev1.Container{{
				Name: kubeVictim, Image: r.cfg.Image, ImagePullPolicy: corev1.PullNever,
				Command:    []string{"/usr/sbin/httpd", "-f", "-p", fmt.Sprint(webPort), "-h", webRoot},
				WorkingDir: webRoot,
				Env: []corev1.EnvVar{
					{Name: "HOME", Value: webRoot},
					{Name: "AWS_ACCESS_KEY_ID", Value: "AKIAVIGILSIMULATION0"},
					{Name: "AWS_SECRET_ACCESS_KEY", Value: "vigil-simulation-fake-secret"},
				},
				SecurityContext: &corev1.SecurityContext{
					RunAsUser: ptrTo(int64(webUID)), RunAsGroup: ptrTo(int64(webUID)), RunAsNonRoot: ptrTo(true),
					AllowPrivilegeEscalation: ptrTo(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
				VolumeMounts: []corev1.VolumeMount{{Name: "web", MountPath: webRoot, ReadOnly: true}},
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(webPort)}},
					PeriodSeconds: 1,
				},
			}},
			Volumes: []corev1.Volume{{Name: "web", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "victim-web"},
				Items: []corev1.KeyToPath{
					{Key: "shell.cgi", Path: "cgi-bin/shell.cgi", Mode: ptrTo(int32(0o755))},
					{Key: "credentials", Path: ".aws/credentials", Mode: ptrTo(int32(0o644))},
					{Key: "index.html", Path: "index.html", Mode: ptrTo(int32(0o644))},
				},
			}}}},
		},
	}
}
