package sensorcmd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/vigil-sec/vigil/internal/kubemeta"
)

// KubeFlags configure the sensor's Kubernetes pod metadata.
type KubeFlags struct {
	// Mode is auto, on or off (--kube-metadata).
	Mode string
	// Kubeconfig is a kubeconfig file for use outside a pod.
	Kubeconfig string
	// Wait bounds how long an alert about a new container waits for its
	// pod's metadata (--kube-meta-wait).
	Wait time.Duration
}

// DefaultKubeFlags are the flags' defaults.
func DefaultKubeFlags() KubeFlags { return KubeFlags{Mode: "auto", Wait: 10 * time.Second} }

// Register adds --kube-metadata, --kubeconfig and --kube-meta-wait to fl.
func (k *KubeFlags) Register(fl *pflag.FlagSet) {
	d := DefaultKubeFlags()
	fl.StringVar(&k.Mode, "kube-metadata", d.Mode, "add pod name, namespace, labels, workload, container name and image from the Kubernetes API: auto (when running in a pod or with --kubeconfig), on, off")
	fl.StringVar(&k.Kubeconfig, "kubeconfig", d.Kubeconfig, "kubeconfig `file` for --kube-metadata outside a pod (default: the pod's service account); exec and auth-provider credential plugins are not supported")
	fl.DurationVar(&k.Wait, "kube-meta-wait", d.Wait, "how long an alert about a new container waits for its pod's metadata before it is sent without")
}

// Enabled decides whether pod metadata is wanted.
func (k *KubeFlags) Enabled() (bool, error) {
	switch k.Mode {
	case "on":
		return true, nil
	case "off":
		return false, nil
	case "auto", "":
		return k.Kubeconfig != "" || os.Getenv("KUBERNETES_SERVICE_HOST") != "", nil
	}
	return false, fmt.Errorf("--kube-metadata %q: use auto, on or off", k.Mode)
}

// Start connects to the API server and watches the node's pods until ctx
// ends. The sensor does not wait for the first list: alerts about
// containers whose pods are not known yet wait for them (--kube-meta-wait).
func (k *KubeFlags) Start(ctx context.Context, node, version string, reg prometheus.Registerer, log *slog.Logger) (*kubemeta.Cache, error) {
	var client *kubemeta.Client
	var err error
	if k.Kubeconfig != "" {
		client, err = kubemeta.KubeconfigClient(k.Kubeconfig)
	} else {
		client, err = kubemeta.InClusterClient()
	}
	if err != nil {
		return nil, fmt.Errorf("--kube-metadata: %w (outside a pod pass --kubeconfig FILE, or --kube-metadata off)", err)
	}
	client.UserAgent = "vigil-sensor/" + version
	if node == "" {
		node = os.Getenv("NODE_NAME")
	}
	if node == "" {
		return nil, fmt.Errorf("--kube-metadata needs the Kubernetes node name: pass --node or set NODE_NAME (in a DaemonSet: env NODE_NAME from fieldRef spec.nodeName)")
	}
	c, err := kubemeta.New(kubemeta.Config{Client: client, Node: node, Logger: log, Registerer: reg})
	if err != nil {
		return nil, err
	}
	go c.Run(ctx)
	log.Info("watching this node's pods for metadata", "node", node, "api", client.Host())
	return c, nil
}
