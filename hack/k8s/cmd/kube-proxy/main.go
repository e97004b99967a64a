// Command kube-proxy is Kubernetes' kube-proxy (iptables mode), built from the
// Go module proxy for vigil's test cluster (hack/cluster): it makes service
// ClusterIPs, such as the API server's 10.96.0.1, reachable from pods.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // load all the prometheus client-go plugins
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() {
	os.Exit(cli.Run(app.NewProxyCommand()))
}
