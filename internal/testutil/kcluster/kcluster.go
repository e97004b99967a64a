// Package kcluster gives tests the real single-node Kubernetes cluster that
// hack/cluster runs on this machine (Kubernetes v1.35.4: etcd, API server,
// controller manager, scheduler, containerd, kubelet, kube-proxy, a CNI
// bridge). There is no registry: images are built locally (hack/image) and
// pods must use imagePullPolicy: Never.
//
// A test calls Require, which skips outside CI and fails in CI (CI=true)
// when no cluster answers:
//
//	c := kcluster.Require(t)
//	ns := c.Namespace(t, "agent")
//	pod := c.CreatePod(t, kcluster.BusyboxPod(ns, "probe", "sleep", "3600"))
//	c.WaitPodRunning(t, ns, pod.Name, time.Minute)
//	out := c.Exec(t, ns, pod.Name, "sh", "-c", "id")
package kcluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vigil-sec/vigil/internal/testenv"
)

// Images present in every cluster hack/cluster starts.
const (
	// BusyboxImage is busybox-static with every applet (sh, nc, wget, ...).
	BusyboxImage = "vigil.local/busybox:1"
	// PauseImage is the pod sandbox image.
	PauseImage = "vigil.local/pause:3.10"
)

// Cluster is a running test cluster, reached with its admin credential.
type Cluster struct {
	// RepoRoot is the vigil repository the cluster was started from.
	RepoRoot string
	// Kubeconfig is the admin kubeconfig's path (.cluster/kubeconfig).
	Kubeconfig string
	// Config and Client talk to the API server as the cluster admin.
	Config *rest.Config
	Client *kubernetes.Clientset
	// NodeName is the cluster's only node.
	NodeName string
	// Kubectl is the kubectl binary Exec and RunKubectl use.
	Kubectl string
}

// Require returns the cluster, or skips the test (outside CI) or fails it
// (CI=true) with the reason when no cluster answers. $VIGIL_KUBECONFIG
// points it at another cluster's kubeconfig.
func Require(t testing.TB) *Cluster {
	t.Helper()
	c, err := Connect(context.Background())
	testenv.Require(t, err == nil, fmt.Sprintf("no test cluster: %v", err))
	return c
}

// Connect finds the cluster's kubeconfig and checks that the API server
// answers and the node is Ready.
func Connect(ctx context.Context) (*Cluster, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	kc := os.Getenv("VIGIL_KUBECONFIG")
	if kc == "" {
		kc = filepath.Join(root, ".cluster", "kubeconfig")
	}
	if _, err := os.Stat(kc); err != nil {
		return nil, fmt.Errorf("no kubeconfig at %s: run hack/cluster up (as root)", kc)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w (run hack/cluster down && hack/cluster up)", kc, err)
	}
	cfg.Timeout = 30 * time.Second
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	nodes, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("API server %s does not answer: %w (hack/cluster status says why; hack/cluster up starts it)", cfg.Host, err)
	}
	var node string
	for _, n := range nodes.Items {
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				node = n.Name
			}
		}
	}
	if node == "" {
		return nil, fmt.Errorf("no Ready node among %d in the cluster at %s (hack/cluster status says why)", len(nodes.Items), cfg.Host)
	}
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		kubectl = "/usr/bin/kubectl"
	}
	return &Cluster{RepoRoot: root, Kubeconfig: kc, Config: cfg, Client: client, NodeName: node, Kubectl: kubectl}, nil
}

// repoRoot walks up from the working directory (a package directory under
// go test) to vigil's go.mod.
func repoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/vigil-sec/vigil\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no vigil repository above %s", wd)
		}
	}
}

// Namespace creates a namespace named prefix-<random> and deletes it when
// the test ends.
func (c *Cluster) Namespace(t testing.TB, prefix string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: prefix + "-",
		Labels:       map[string]string{"vigil.test/owner": "kcluster"},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create test namespace %s-*: %v", prefix, err)
	}
	// The default service account appears shortly after the namespace; pods
	// created before it are rejected.
	if err := poll(ctx, func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	}); err != nil {
		t.Fatalf("namespace %s: no default service account: %v", ns.Name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		zero := int64(0)
		if err := c.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete test namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// BusyboxPod is a pod running the local busybox image with command, that
// stops at once when deleted.
func BusyboxPod(namespace, name string, command ...string) *corev1.Pod {
	zero := int64(0)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &zero,
			Containers: []corev1.Container{{
				Name:            name,
				Image:           BusyboxImage,
				ImagePullPolicy: corev1.PullNever,
				Command:         command,
			}},
		},
	}
}

// CreatePod creates pod (it is removed with its namespace).
func (c *Cluster) CreatePod(t testing.TB, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	created, err := c.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	return created
}

// WaitPodRunning waits until every container of the pod runs and is ready.
// It fails at once when the pod cannot start (image missing, crash, pod
// finished), with the reason.
func (c *Cluster) WaitPodRunning(t testing.TB, namespace, name string, timeout time.Duration) *corev1.Pod {
	t.Helper()
	pod, err := c.waitPodRunning(namespace, name, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

func (c *Cluster) waitPodRunning(namespace, name string, timeout time.Duration) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var pod *corev1.Pod
	var why string
	err := poll(ctx, func(ctx context.Context) (bool, error) {
		var err error
		pod, err = c.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("get pod %s/%s: %w", namespace, name, err)
		}
		switch pod.Status.Phase {
		case corev1.PodSucceeded, corev1.PodFailed:
			return false, fmt.Errorf("pod %s/%s finished (%s) instead of running: %s", namespace, name, pod.Status.Phase, containerStates(pod))
		}
		for _, cs := range pod.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil {
				switch w.Reason {
				case "ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName":
					return false, fmt.Errorf("pod %s/%s: image %s is not in the cluster (%s: %s): build and import it with hack/image, and use imagePullPolicy: Never", namespace, name, cs.Image, w.Reason, w.Message)
				case "CrashLoopBackOff", "CreateContainerError", "CreateContainerConfigError", "RunContainerError":
					return false, fmt.Errorf("pod %s/%s cannot start container %s: %s: %s", namespace, name, cs.Name, w.Reason, w.Message)
				}
			}
		}
		why = containerStates(pod)
		if pod.Status.Phase != corev1.PodRunning {
			return false, nil
		}
		for _, cond := range pod.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if errors.Is(err, context.DeadlineExceeded) {
		phase := corev1.PodPhase("unknown")
		if pod != nil {
			phase = pod.Status.Phase
		}
		return pod, fmt.Errorf("pod %s/%s not running and ready after %s (phase %s; %s; kubectl --kubeconfig %s -n %s describe pod %s shows the events)", namespace, name, timeout, phase, why, c.Kubeconfig, namespace, name)
	}
	return pod, err
}

func containerStates(pod *corev1.Pod) string {
	var parts []string
	for _, cs := range pod.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			parts = append(parts, fmt.Sprintf("%s waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message))
		case cs.State.Terminated != nil:
			parts = append(parts, fmt.Sprintf("%s terminated: exit %d %s %s", cs.Name, cs.State.Terminated.ExitCode, cs.State.Terminated.Reason, cs.State.Terminated.Message))
		case cs.State.Running != nil:
			parts = append(parts, cs.Name+" running")
		}
	}
	if len(parts) == 0 {
		return "no container status yet"
	}
	return strings.Join(parts, "; ")
}

// ExecResult is what a command run in a container printed and returned.
type ExecResult struct {
	Stdout, Stderr string
	ExitCode       int
}

// ExecCommand runs a command in the pod's first container, like kubectl
// exec. A non-zero exit status is reported in ExitCode, not as an error;
// the error is for failing to run it at all.
func (c *Cluster) ExecCommand(ctx context.Context, namespace, pod string, command ...string) (ExecResult, error) {
	args := append([]string{"exec", "-n", namespace, pod, "--"}, command...)
	var res ExecResult
	out, errOut, err := c.kubectl(ctx, args...)
	res.Stdout, res.Stderr = out, errOut
	if err == nil {
		return res, nil
	}
	// kubectl exits with the command's status and says so on stderr; any
	// other failure (no such pod, API server unreachable) is kubectl's own.
	var ee *exec.ExitError
	marker := fmt.Sprintf("command terminated with exit code %d", exitCode(err))
	if errors.As(err, &ee) && strings.Contains(errOut, marker) {
		res.ExitCode = ee.ExitCode()
		res.Stderr = strings.TrimSuffix(strings.Replace(errOut, marker, "", 1), "\n")
		return res, nil
	}
	if ee != nil {
		return res, fmt.Errorf("kubectl exec into %s/%s: %s", namespace, pod, strings.TrimSpace(errOut))
	}
	return res, fmt.Errorf("kubectl exec into %s/%s: %w", namespace, pod, err)
}

// Exec runs a command in the pod and returns its stdout; anything but exit
// status 0 fails the test.
func (c *Cluster) Exec(t testing.TB, namespace, pod string, command ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := c.ExecCommand(ctx, namespace, pod, command...)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("%q in %s/%s exited %d; stderr: %s", command, namespace, pod, res.ExitCode, res.Stderr)
	}
	return res.Stdout
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// RunKubectl runs kubectl against the cluster and returns its stdout; a
// failure fails the test with kubectl's stderr.
func (c *Cluster) RunKubectl(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, errOut, err := c.kubectl(ctx, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v: %s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func (c *Cluster) kubectl(ctx context.Context, args ...string) (string, string, error) {
	cmd := exec.CommandContext(ctx, c.Kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// vigilImage builds and imports vigil's image once per test binary: every
// test in it runs the same code.
var vigilImage struct {
	sync.Mutex
	ref string
}

// VigilImage builds vigil's container image from this repository
// (hack/image: a static ./cmd/vigil, imported into the cluster's containerd)
// once per test binary and returns its reference, vigil.local/vigil:<version>.
func (c *Cluster) VigilImage(t testing.TB) string {
	t.Helper()
	vigilImage.Lock()
	defer vigilImage.Unlock()
	if vigilImage.ref != "" {
		return vigilImage.ref
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(c.RepoRoot, "hack", "image"))
	cmd.Dir = c.RepoRoot
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("build and import vigil's image (hack/image): %v\n%s", err, errOut.String())
	}
	lines := strings.Fields(out.String())
	if len(lines) == 0 {
		t.Fatalf("hack/image printed no image reference; its stderr:\n%s", errOut.String())
	}
	vigilImage.ref = lines[len(lines)-1]
	t.Logf("vigil image %s built and imported in %s", vigilImage.ref, time.Since(start).Round(time.Millisecond))
	return vigilImage.ref
}

// poll calls cond every 200ms until it returns true or an error, or ctx ends.
func poll(ctx context.Context, cond func(context.Context) (bool, error)) error {
	for {
		ok, err := cond(ctx)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
