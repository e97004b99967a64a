package main

import (
	"fmt"
	"strconv"
)

func (e *env) etcdArgs() []string {
	client := fmt.Sprintf("http://127.0.0.1:%d", etcdClientPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", etcdPeerPort)
	return []string{
		"--name=vigil",
		"--data-dir=" + e.path("etcd"),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=vigil=" + peer,
		"--initial-cluster-state=new",
		"--unsafe-no-fsync", // a throw-away test cluster: speed over durability
		"--log-level=warn",
	}
}

func (e *env) apiserverArgs() []string {
	pki := func(f string) string { return e.path("pki", f) }
	return []string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", etcdClientPort),
		"--bind-address=0.0.0.0",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--advertise-address=" + e.nodeIP,
		"--tls-cert-file=" + pki("apiserver.crt"),
		"--tls-private-key-file=" + pki("apiserver.key"),
		"--client-ca-file=" + pki("ca.crt"),
		"--token-auth-file=" + pki("tokens.csv"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + pki("sa.pub"),
		"--service-account-signing-key-file=" + pki("sa.key"),
		"--service-cluster-ip-range=" + serviceCIDR,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--kubelet-client-certificate=" + pki("apiserver-kubelet-client.crt"),
		"--kubelet-client-key=" + pki("apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types=InternalIP",
		"--profiling=false",
		// The audit log vigil audit follows in the tests (docs/events.md's policy).
		"--audit-policy-file=" + e.path("config", "audit-policy.yaml"),
		"--audit-log-path=" + e.path("audit", "audit.log"),
		"--audit-log-maxsize=50",
		"--audit-log-maxbackup=2",
		// ... and the webhook backend (same policy), batched, sent within a
		// second; undeliverable batches are dropped by the API server, never
		// blocking requests.
		"--audit-webhook-config-file=" + e.path("config", "audit-webhook.kubeconfig"),
		"--audit-webhook-mode=batch",
		"--audit-webhook-batch-max-wait=1s",
		"--audit-webhook-initial-backoff=1s",
		"--v=1",
	}
}

// auditPolicy is the policy of docs/events.md: what the audit rules need,
// never secrets' contents.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    verbs: [watch]
  - level: Metadata
    resources:
      - group: ""
        resources: [secrets, configmaps, serviceaccounts/token]
      - group: authentication.k8s.io
        resources: [tokenreviews]
  - level: Request
    verbs: [create, update, patch]
    resources:
      - group: ""
        resources: [pods, replicationcontrollers]
      - group: apps
        resources: [deployments, daemonsets, statefulsets, replicasets]
      - group: batch
        resources: [jobs, cronjobs]
      - group: rbac.authorization.k8s.io
        resources: [roles, clusterroles, rolebindings, clusterrolebindings]
  - level: Metadata
`

func (e *env) controllerManagerArgs() []string {
	kc := e.path("kubeconfigs", "kube-controller-manager")
	return []string{
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(cmPort),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + e.path("pki", "sa.key"),
		"--root-ca-file=" + e.path("pki", "ca.crt"),
		"--cluster-signing-cert-file=" + e.path("pki", "ca.crt"),
		"--cluster-signing-key-file=" + e.path("pki", "ca.key"),
		"--service-cluster-ip-range=" + serviceCIDR,
		"--profiling=false",
		"--v=1",
	}
}

func (e *env) schedulerArgs() []string {
	kc := e.path("kubeconfigs", "kube-scheduler")
	return []string{
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(schedPort),
		"--leader-elect=false",
		"--profiling=false",
		"--v=1",
	}
}

func (e *env) kubeletArgs() []string {
	return []string{
		"--config=" + e.path("config", "kubelet.yaml"),
		"--kubeconfig=" + e.path("kubeconfigs", "kubelet"),
		"--root-dir=" + e.path("kubelet"),
		"--cert-dir=" + e.path("kubelet", "pki"),
		"--hostname-override=" + e.nodeName,
		"--node-ip=" + e.nodeIP,
		"--v=1",
	}
}

// writeConfigs writes the containerd, CNI, kubelet and kube-proxy
// configuration files.
func (e *env) writeConfigs() error {
	files := map[string]string{
		e.path("config", "containerd.toml"):         e.containerdConfig(),
		e.path("cni", "net.d", "10-vigil.conflist"): e.cniConfig(),
		e.path("config", "kubelet.yaml"):            e.kubeletConfig(),
		e.path("config", "kube-proxy.yaml"):         e.kubeProxyConfig(),
	}
	for path, content := range files {
		if err := writeFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// containerdConfig keeps every path of this containerd under .cluster so it
// never clashes with a system containerd.
func (e *env) containerdConfig() string {
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[debug]
  level = "warn"

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  # runc fails with "can't get final child's PID from pipe" on this kernel otherwise.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[7]q

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[8]q
`, e.path("containerd", "root"), e.path("containerd", "state"), e.containerdSock(), e.containerdSock()+".ttrpc",
		e.path("containerd", "opt"), pauseRef, e.path("containerd", "runc"), e.path("cni", "net.d"))
}

// cniConfig is a bridge network for the node's pods. No masquerading: pods
// only talk to this host (its node IP) and each other.
func (e *env) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": %q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    }
  ]
}
`, cniNetwork, bridgeName, podCIDR, e.path("cni", "ipam"))
}

func (e *env) kubeletConfig() string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host has hybrid cgroups (v1 controllers) and no systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://%[1]s
address: %[2]s
port: %[3]d
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: %[4]d
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[5]s
authorization:
  mode: Webhook
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: %[6]s
podCIDR: %[7]s
# Images are imported locally and cannot be pulled again: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: "1%%"
  imagefs.available: "1%%"
  nodefs.inodesFree: "1%%"
failSwapOn: false
serializeImagePulls: false
maxPods: 110
`, e.containerdSock(), e.nodeIP, kubeletPort, kubeletHealthz, e.path("pki", "ca.crt"), e.path("pod-logs"), podCIDR)
}

func (e *env) kubeProxyConfig() string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %[1]s
hostnameOverride: %[2]s
mode: iptables
clusterCIDR: %[3]s
healthzBindAddress: 127.0.0.1:%[4]d
metricsBindAddress: 127.0.0.1:%[5]d
iptables:
  # no route_localnet sysctl change
  localhostNodePorts: false
conntrack:
  # leave the host's conntrack sysctls alone
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, e.path("kubeconfigs", "kube-proxy"), e.nodeName, clusterCIDR, proxyHealthz, proxyMetrics)
}
