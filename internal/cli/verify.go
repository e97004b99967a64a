package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/extcatalog"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/kube"
	"github.com/vigil-sec/vigil/internal/store"
)

// TestAlertMarker is the harmless test alert's trigger (rules/test.yaml).
const TestAlertMarker = "VIGIL-TEST-ALERT-7f3b"

// testAlertType is the rule id of the test alert.
const testAlertType = "vigil.node/TestAlert"

// checklist prints ✓/✗ lines with timings and remembers failures.
type checklist struct {
	w      io.Writer
	failed int
}

func (c *checklist) run(name string, f func() (detail string, fix string, err error)) bool {
	start := time.Now()
	detail, fix, err := f()
	took := time.Since(start).Round(100 * time.Millisecond)
	if err != nil {
		c.failed++
		fmt.Fprintf(c.w, "✗ %s (%s): %v\n", name, took, err)
		if fix != "" {
			fmt.Fprintf(c.w, "    fix: %s\n", fix)
		}
		return false
	}
	fmt.Fprintf(c.w, "✓ %s (%s)%s\n", name, took, prefixIf(": ", detail))
	return true
}

func (c *checklist) skip(name, why string) {
	c.failed++
	fmt.Fprintf(c.w, "- %s: skipped (%s)\n", name, why)
}

func newVerifyCmd() *cobra.Command {
	var name, group, extName string
	var alertTimeout time.Duration
	var noAlert, simulateToo bool
	var simulateWait time.Duration
	r := &remoteFlags{}
	k := &kubeFlags{}
	cmd := &cobra.Command{
		Use:   "verify --name N --resource-group G",
		Short: "Check the whole chain: Connected, extension Succeeded, sensor pods ready, an alert round trip",
		Long: `The verification checklist as one command:
  1. the cluster is Connected at the hub;
  2. its vigil.sensor extension is Succeeded;
  3. a sensor pod runs and is ready on every node (needs the cluster's kubeconfig);
  4. the harmless test alert, triggered by a short-lived pod in vigil-system, arrives at the hub;
  5. with --simulate: the attack simulation (vigil simulate all in the cluster) raises every expected alert.
Each step prints ✓ or ✗ with the time taken and, for ✗, the fix. Exit status is non-zero when a step fails.`,
		Example: "  vigil verify --name prod --resource-group platform",
		Args:    usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || group == "" {
				return flagUsage("--name and --resource-group are required")
			}
			ctx := cmd.Context()
			start := time.Now()
			rm, err := r.resolve()
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			c := &checklist{w: cmd.OutOrStdout()}
			var cluster hubclient.Cluster
			c.run("cluster "+name+" is Connected", func() (string, string, error) {
				cl, err := rm.client.GetCluster(ctx, rm.subscription, group, name)
				if err != nil {
					return "", "connect it: vigil connect --name " + name + " --resource-group " + group, err
				}
				cluster = cl
				st := cl.Properties.ConnectivityStatus
				if st != store.Connected {
					return "", "check the agent: kubectl -n vigil-system get pods,deploy; kubectl -n vigil-system logs deploy/vigil-agent; vigil preflight --in-cluster",
						fmt.Errorf("connectivityStatus is %s (last heartbeat %s)", st, fmtWhen(cl.Properties.LastConnectivityTime))
				}
				return fmt.Sprintf("agent %s, Kubernetes %s, %d nodes, last heartbeat %s", cl.Properties.AgentVersion, cl.Properties.KubernetesVersion,
					cl.Properties.TotalNodeCount, fmtWhen(cl.Properties.LastConnectivityTime)), "", nil
			})
			extOK := c.run("sensor extension is Succeeded", func() (string, string, error) {
				es, err := rm.client.ListExtensions(ctx, rm.subscription, group, name)
				if err != nil {
					return "", "", err
				}
				for _, e := range es {
					if e.Properties.ExtensionType != extcatalog.SensorType || (extName != "" && e.Name != extName) {
						continue
					}
					v := toExtensionView(e)
					if v.ProvisioningState != store.ProvisioningSucceeded {
						return "", fmt.Sprintf("vigil extension show -c %s -g %s -t connectedClusters -n %s; fix what its message names", name, group, e.Name),
							fmt.Errorf("extension %s is %s: %s", e.Name, v.ProvisioningState, v.Message)
					}
					return e.Name + ": " + v.Message, "", nil
				}
				return "", fmt.Sprintf("vigil extension create -c %s -g %s -t connectedClusters -n vigil-sensor --extension-type vigil.sensor", name, group),
					fmt.Errorf("cluster %s has no %s extension", name, extcatalog.SensorType)
			})
			kc, kerr := k.load()
			podsOK := false
			image, pullPolicy := "", corev1.PullIfNotPresent
			if kerr != nil {
				c.run("sensor pods ready on every node", func() (string, string, error) {
					return "", "pass --kubeconfig/--kube-context for the cluster", kerr
				})
			} else {
				podsOK = c.run("sensor pods ready on every node", func() (string, string, error) {
					ds, err := kc.Kube.AppsV1().DaemonSets("vigil-system").Get(ctx, "vigil-sensor", metav1.GetOptions{})
					if err != nil {
						return "", "create the sensor extension (step 2)", fmt.Errorf("DaemonSet vigil-system/vigil-sensor: %w", err)
					}
					if len(ds.Spec.Template.Spec.Containers) > 0 {
						image, pullPolicy = ds.Spec.Template.Spec.Containers[0].Image, ds.Spec.Template.Spec.Containers[0].ImagePullPolicy
					}
					st, err := kc.DaemonSet(ctx, "vigil-system", "vigil-sensor")
					if err != nil {
						return "", "", err
					}
					nodes, err := kc.NodeCount(ctx)
					if err != nil {
						return "", "", err
					}
					if !st.Ready() || int(st.NumReady) < nodes {
						return "", "kubectl -n vigil-system describe pods -l app.kubernetes.io/name=vigil-sensor; kubectl -n vigil-system logs ds/vigil-sensor",
							fmt.Errorf("DaemonSet vigil-sensor %s (cluster has %d nodes)", st, nodes)
					}
					return fmt.Sprintf("%d/%d nodes", st.NumReady, nodes), "", nil
				})
			}
			const step4 = "test alert arrives at the hub"
			switch {
			case noAlert:
				fmt.Fprintf(cmd.OutOrStdout(), "- %s: skipped (--no-alert)\n", step4)
			case !podsOK || !extOK || kerr != nil:
				c.skip(step4, "needs the sensor running (steps 2 and 3)")
			default:
				c.run(step4, func() (string, string, error) {
					return alertRoundTrip(ctx, rm, kc, cluster, image, pullPolicy, alertTimeout)
				})
			}
			if simulateToo {
				const step5 = "the attack simulation raises every expected alert"
				if !podsOK || !extOK || kerr != nil {
					c.skip(step5, "needs the sensor running (steps 2 and 3)")
				} else {
					c.run(step5, func() (string, string, error) {
						f := &simulateFlags{wait: simulateWait, kube: *k, remote: *r, image: image, ns: "verify-" + randomSuffix(),
							ready: 3 * time.Minute, out: clio.Options{Output: clio.Table}}
						if err := runSimulate(cmd, &globalFlags{logLevel: "warn", logFormat: "text"}, f, nil); err != nil {
							return "", "see the table above: every missing alert is named; run `vigil simulate all --kube-context ...` to repeat it", err
						}
						return "19 steps, every alert at the hub", "", nil
					})
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "verify took %s\n", time.Since(start).Round(100*time.Millisecond))
			if c.failed > 0 {
				return clio.Errorf(clio.ExitGeneral, "%d verification step(s) failed", c.failed)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&name, "name", "n", "", "cluster name (required)")
	fl.StringVarP(&group, "resource-group", "g", "", "resource group (required)")
	fl.StringVar(&extName, "extension-name", "", "the sensor extension's name (default: any vigil.sensor extension)")
	fl.DurationVar(&alertTimeout, "alert-timeout", 2*time.Minute, "how long to wait for the test alert")
	fl.BoolVar(&noAlert, "no-alert", false, "skip the alert round trip")
	fl.BoolVar(&simulateToo, "simulate", false, "also run the attack simulation in the cluster (vigil simulate all) and check every expected alert")
	fl.DurationVar(&simulateWait, "simulate-wait", time.Minute, "with --simulate: how long to wait for the simulation's alerts")
	r.register(fl)
	k.register(fl)
	return cmd
}

func fmtWhen(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// alertRoundTrip runs a pod whose process carries the test alert marker and
// waits for the alert at the hub.
func alertRoundTrip(ctx context.Context, rm *remote, kc *kube.Client, cluster hubclient.Cluster, image string, pull corev1.PullPolicy, timeout time.Duration) (string, string, error) {
	if image == "" {
		return "", "", fmt.Errorf("the sensor DaemonSet names no image")
	}
	start := time.Now().Add(-2 * time.Second)
	podName := "vigil-verify-" + randomSuffix()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: "vigil-system", Labels: map[string]string{"app.kubernetes.io/part-of": "vigil", "app.kubernetes.io/name": "vigil-verify"}},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, AutomountServiceAccountToken: ptrTo(false),
			Containers: []corev1.Container{{Name: "test-alert", Image: image, ImagePullPolicy: pull,
				// vigil's entrypoint: `vigil help <marker>` prints a line and exits 0;
				// its argv carries the marker the test rule matches.
				Args: []string{"help", TestAlertMarker}}}},
	}
	if _, err := kc.Kube.CoreV1().Pods("vigil-system").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return "", "you need permission to create pods in vigil-system", fmt.Errorf("start the test pod: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = kc.Kube.CoreV1().Pods("vigil-system").Delete(dctx, podName, metav1.DeleteOptions{GracePeriodSeconds: ptrTo(int64(0))})
	}()
	deadline := time.Now().Add(timeout)
	containerID := ""
	for {
		if containerID == "" {
			if p, err := kc.Kube.CoreV1().Pods("vigil-system").Get(ctx, podName, metav1.GetOptions{}); err == nil && len(p.Status.ContainerStatuses) > 0 {
				_, containerID, _ = strings.Cut(p.Status.ContainerStatuses[0].ContainerID, "://")
			}
		}
		as, _, err := rm.client.ListAlerts(ctx, hubclient.AlertListOptions{Subscription: rm.subscription, Cluster: cluster.ID, AlertType: testAlertType, Since: start, Top: 20})
		if err != nil {
			return "", "", fmt.Errorf("list alerts: %w", err)
		}
		for _, a := range as {
			e := a.Properties.Entities
			// Only the test pod's process: not another process on a node
			// that happens to carry the marker (a kubectl exec, say).
			if e.Pod == podName || (containerID != "" && e.Container != nil && e.Container.ID == containerID) {
				return fmt.Sprintf("alert %s after %s (namespace %s, pod %s, container %s, image %s)", a.Name, time.Since(start).Round(100*time.Millisecond),
					orDefault(e.Namespace, "?"), orDefault(e.Pod, "?"), orDefault(containerName(e), "?"), orDefault(containerImage(e), "?")), "", nil
			}
		}
		if time.Now().After(deadline) {
			p, _ := kc.Kube.CoreV1().Pods("vigil-system").Get(ctx, podName, metav1.GetOptions{})
			why := ""
			if p != nil {
				why = kube.PodProblem(p)
			}
			return "", "read the sensor's log (kubectl -n vigil-system logs ds/vigil-sensor): look for hub delivery errors; run vigil preflight --in-cluster",
				fmt.Errorf("no %s alert from pod %s within %s%s", testAlertType, podName, timeout, prefixIf("; test pod: ", why))
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func ptrTo[T any](v T) *T { return &v }

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func containerName(e alert.Entities) string {
	if e.Container == nil {
		return ""
	}
	return e.Container.Name
}

func containerImage(e alert.Entities) string {
	if e.Container == nil {
		return ""
	}
	return e.Container.Image
}
