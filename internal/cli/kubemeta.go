package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/vigil-sec/vigil/internal/kubemeta"
)

// kubeMetaFlags configure the sensor's Kubernetes pod metadata.
type kubeMetaFlags struct {
	mode       string
	kubeconfig string
	wait       time.Duration
}

func (k *kubeMetaFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&k.mode, "kube-metadata", "auto", "add pod name, namespace, labels, workload, container name and image from the Kubernetes API: auto (when running in a pod or with --kubeconfig), on, off")
	fl.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig `file` for --kube-metadata outside a pod (default: the pod's service account)")
	fl.DurationVar(&k.wait, "kube-meta-wait", 10*time.Second, "how long an alert about a new container waits for its pod's metadata before it is sent without")
}

// enabled decides whether pod metadata is wanted.
func (k *kubeMetaFlags) enabled() (bool, error) {
	switch k.mode {
	case "on":
		return true, nil
	case "off":
		return false, nil
	case "auto", "":
		return k.kubeconfig != "" || os.Getenv("KUBERNETES_SERVICE_HOST") != "", nil
	}
	return false, fmt.Errorf("--kube-metadata %q: use auto, on or off", k.mode)
}

// start connects to the API server and watches the node's pods until ctx
// ends. The sensor does not wait for the first list: alerts about
// containers whose pods are not known yet wait for them (--kube-meta-wait).
func (k *kubeMetaFlags) start(ctx context.Context, node string, reg prometheus.Registerer, log *slog.Logger) (*kubemeta.Cache, error) {
	var cfg *rest.Config
	var err error
	if k.kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", k.kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("--kube-metadata: %w (outside a pod pass --kubeconfig FILE, or --kube-metadata off)", err)
	}
	cfg.UserAgent = "vigil-sensor/" + version
	// client-go logs through klog: send it to the sensor's log.
	klog.SetSlogLogger(log.With("component", "client-go"))
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("--kube-metadata: %w", err)
	}
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
	log.Info("watching this node's pods for metadata", "node", node, "api", cfg.Host)
	return c, nil
}
