// Package kube is vigil's thin layer over client-go: it loads a kubeconfig
// (or the in-cluster configuration), applies rendered objects with
// server-side apply through the dynamic client and a REST mapper, deletes
// what a label selector names, and waits for workloads to become ready.
package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"
)

// Client bundles the clients vigil needs for one cluster.
type Client struct {
	// Config is the REST configuration the clients were made from.
	Config *rest.Config
	// Kube is the typed clientset.
	Kube kubernetes.Interface
	// Dynamic applies and deletes arbitrary objects.
	Dynamic dynamic.Interface
	mapper  *restmapper.DeferredDiscoveryRESTMapper
	// Context is the kubeconfig context in use ("" in-cluster).
	Context string
	// Server is the API server's URL.
	Server string
}

// LoadOptions choose the cluster.
type LoadOptions struct {
	// Kubeconfig is the file (default $KUBECONFIG, else ~/.kube/config).
	Kubeconfig string
	// Context overrides the kubeconfig's current context.
	Context string
	// InCluster uses the pod's service account.
	InCluster bool
}

// Load builds a Client from a kubeconfig or the in-cluster configuration.
func Load(o LoadOptions) (*Client, error) {
	var cfg *rest.Config
	ctxName := ""
	if o.InCluster {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("load the in-cluster Kubernetes configuration: %w (run inside a pod with a service account, or pass a kubeconfig)", err)
		}
		cfg = c
	} else {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		if o.Kubeconfig != "" {
			if _, err := os.Stat(o.Kubeconfig); err != nil {
				return nil, fmt.Errorf("kubeconfig %s: %w (give an existing file with --kubeconfig)", o.Kubeconfig, err)
			}
			rules.ExplicitPath = o.Kubeconfig
		}
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.Context})
		raw, err := cc.RawConfig()
		if err != nil {
			return nil, fmt.Errorf("read kubeconfig: %w", err)
		}
		ctxName = raw.CurrentContext
		if o.Context != "" {
			ctxName = o.Context
			if _, ok := raw.Contexts[o.Context]; !ok {
				return nil, fmt.Errorf("kube context %q is not in the kubeconfig: list them with `kubectl config get-contexts`", o.Context)
			}
		}
		c, err := cc.ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("load kubeconfig (context %q): %w; check `kubectl config current-context` or pass --kubeconfig/--kube-context", ctxName, err)
		}
		cfg = c
	}
	return NewClient(cfg, ctxName)
}

// NewClient builds a Client from a REST configuration.
func NewClient(cfg *rest.Config, contextName string) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client for %s: %w", cfg.Host, err)
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("dynamic client for %s: %w", cfg.Host, err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("discovery client for %s: %w", cfg.Host, err)
	}
	return &Client{Config: cfg, Kube: kc, Dynamic: dc, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc)),
		Context: contextName, Server: cfg.Host}, nil
}

// ServerVersion is the API server's version (e.g. v1.35.4).
func (c *Client) ServerVersion(ctx context.Context) (string, error) {
	v, err := c.Kube.Discovery().ServerVersion()
	if err != nil {
		return "", fmt.Errorf("ask the API server %s for its version: %w", c.Server, err)
	}
	return v.GitVersion, nil
}

// ParseObjects splits a multi-document YAML (or JSON) stream into objects,
// skipping empty documents.
func ParseObjects(data []byte) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("manifest document %d: %w", i+1, err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.GetKind() == "" || u.GetAPIVersion() == "" {
			return nil, fmt.Errorf("manifest document %d has no kind or apiVersion", i+1)
		}
		out = append(out, u)
	}
}

// resource finds the REST resource of obj, refreshing discovery once when
// the kind is unknown (a CRD installed a moment ago).
func (c *Client) resource(obj *unstructured.Unstructured) (dynamic.ResourceInterface, *meta.RESTMapping, error) {
	gvk := obj.GroupVersionKind()
	m, err := c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		c.mapper.Reset()
		m, err = c.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("the API server %s does not serve %s: %w", c.Server, gvk, err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		ns := obj.GetNamespace()
		if ns == "" {
			ns = "default"
		}
		return c.Dynamic.Resource(m.Resource).Namespace(ns), m, nil
	}
	return c.Dynamic.Resource(m.Resource), m, nil
}

// ApplyOptions tune Apply.
type ApplyOptions struct {
	// FieldManager owns the applied fields (required).
	FieldManager string
	// DryRun asks the API server to validate without persisting.
	DryRun bool
}

// Apply server-side applies objs in order (forcing ownership of conflicting
// fields) and returns what the API server made of them.
func (c *Client) Apply(ctx context.Context, objs []*unstructured.Unstructured, o ApplyOptions) ([]*unstructured.Unstructured, error) {
	if o.FieldManager == "" {
		return nil, errors.New("apply: a field manager is required")
	}
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, obj := range objs {
		ri, _, err := c.resource(obj)
		if err != nil {
			return out, err
		}
		data, err := obj.MarshalJSON()
		if err != nil {
			return out, fmt.Errorf("encode %s: %w", Describe(obj), err)
		}
		po := metav1.PatchOptions{FieldManager: o.FieldManager, Force: ptr(true)}
		if o.DryRun {
			po.DryRun = []string{metav1.DryRunAll}
		}
		res, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, po)
		if err != nil {
			return out, fmt.Errorf("apply %s: %w", Describe(obj), explain(err))
		}
		out = append(out, res)
	}
	return out, nil
}

// Delete deletes objs in reverse order; objects already gone are fine. It
// returns after the API server accepted the deletions (foreground).
func (c *Client) Delete(ctx context.Context, objs []*unstructured.Unstructured) error {
	var errs []error
	for i := len(objs) - 1; i >= 0; i-- {
		obj := objs[i]
		ri, _, err := c.resource(obj)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		prop := metav1.DeletePropagationForeground
		err = ri.Delete(ctx, obj.GetName(), metav1.DeleteOptions{PropagationPolicy: &prop})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s: %w", Describe(obj), explain(err)))
		}
	}
	return errors.Join(errs...)
}

// Exists reports whether obj exists.
func (c *Client) Exists(ctx context.Context, obj *unstructured.Unstructured) (bool, error) {
	ri, _, err := c.resource(obj)
	if err != nil {
		return false, err
	}
	_, err = ri.Get(ctx, obj.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get %s: %w", Describe(obj), explain(err))
	}
	return true, nil
}

// WaitGone waits until none of objs exists.
func (c *Client) WaitGone(ctx context.Context, objs []*unstructured.Unstructured, poll time.Duration) error {
	for {
		left := ""
		for _, o := range objs {
			ok, err := c.Exists(ctx, o)
			if err != nil {
				return err
			}
			if ok {
				left = Describe(o)
				break
			}
		}
		if left == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s still exists: %w", left, ctx.Err())
		case <-time.After(poll):
		}
	}
}

// Describe names an object as kubectl does: Kind namespace/name.
func Describe(obj *unstructured.Unstructured) string {
	if ns := obj.GetNamespace(); ns != "" {
		return obj.GetKind() + " " + ns + "/" + obj.GetName()
	}
	return obj.GetKind() + " " + obj.GetName()
}

// explain adds what to do to the API errors users meet.
func explain(err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%w (RBAC denied: the identity in use lacks the permission; use a cluster-admin kubeconfig or grant it)", err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("%w (the API server refused the credentials: refresh the kubeconfig)", err)
	}
	return err
}

func ptr[T any](v T) *T { return &v }

// DaemonSetStatus summarises a DaemonSet's rollout.
type DaemonSetStatus struct {
	Exists                     bool
	Desired, NumReady, Updated int32
	ObservedCurrent            bool
	// Problem names why pods are not ready (from their container states), if known.
	Problem string
}

// Ready reports whether every desired pod runs the current template and is ready.
func (s DaemonSetStatus) Ready() bool {
	return s.Exists && s.ObservedCurrent && s.Desired > 0 && s.NumReady == s.Desired && s.Updated == s.Desired
}

func (s DaemonSetStatus) String() string {
	if !s.Exists {
		return "DaemonSet missing"
	}
	msg := fmt.Sprintf("ready on %d/%d nodes", s.NumReady, s.Desired)
	if s.Problem != "" {
		msg += ": " + s.Problem
	}
	return msg
}

// DaemonSet reads a DaemonSet's rollout status, and when pods are not ready
// what their containers are waiting for.
func (c *Client) DaemonSet(ctx context.Context, ns, name string) (DaemonSetStatus, error) {
	ds, err := c.Kube.AppsV1().DaemonSets(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return DaemonSetStatus{}, nil
	}
	if err != nil {
		return DaemonSetStatus{}, fmt.Errorf("get DaemonSet %s/%s: %w", ns, name, explain(err))
	}
	st := DaemonSetStatus{Exists: true, Desired: ds.Status.DesiredNumberScheduled, NumReady: ds.Status.NumberReady,
		Updated: ds.Status.UpdatedNumberScheduled, ObservedCurrent: ds.Status.ObservedGeneration >= ds.Generation}
	if !st.Ready() {
		st.Problem = c.podProblem(ctx, ns, ds.Spec.Selector)
	}
	return st, nil
}

// DeploymentReady reports whether a Deployment has all its replicas
// available, and otherwise why not (from its pods).
func (c *Client) DeploymentReady(ctx context.Context, ns, name string) (bool, string, error) {
	d, err := c.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, "Deployment " + ns + "/" + name + " does not exist", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("get Deployment %s/%s: %w", ns, name, explain(err))
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	if d.Status.ObservedGeneration >= d.Generation && d.Status.AvailableReplicas >= want && d.Status.UpdatedReplicas >= want {
		return true, "", nil
	}
	return false, c.podProblem(ctx, ns, d.Spec.Selector), nil
}

// podProblem describes why the first unready pod a selector matches is not
// ready: the waiting reason and message (ErrImageNeverPull,
// CrashLoopBackOff, ...), the last termination, or an unschedulable condition.
func (c *Client) podProblem(ctx context.Context, ns string, sel *metav1.LabelSelector) string {
	if sel == nil {
		return ""
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return ""
	}
	pods, err := c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: s.String()})
	if err != nil {
		return "cannot list pods: " + explain(err).Error()
	}
	if len(pods.Items) == 0 {
		return "no pods yet"
	}
	for _, p := range pods.Items {
		if why := PodProblem(&p); why != "" {
			return "pod " + p.Name + ": " + why
		}
	}
	return ""
}

// PodProblem says why a pod is not ready ("" when it is).
func PodProblem(p *corev1.Pod) string {
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" && w.Reason != "PodInitializing" {
			msg := "container " + cs.Name + " " + w.Reason
			if w.Message != "" {
				msg += ": " + w.Message
			}
			if t := cs.LastTerminationState.Terminated; t != nil {
				msg += fmt.Sprintf(" (last exit %d %s)", t.ExitCode, strings.TrimSpace(t.Message))
			}
			return msg
		}
		if t := cs.State.Terminated; t != nil {
			return fmt.Sprintf("container %s terminated: exit %d %s %s", cs.Name, t.ExitCode, t.Reason, strings.TrimSpace(t.Message))
		}
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse {
			return "not scheduled: " + cond.Message
		}
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady && cond.Status != corev1.ConditionTrue {
			if p.Status.Phase == corev1.PodRunning {
				return "running but not ready: " + cond.Message
			}
			return string(p.Status.Phase)
		}
	}
	return ""
}

// NodeCount is the number of nodes.
func (c *Client) NodeCount(ctx context.Context) (int, error) {
	nodes, err := c.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, fmt.Errorf("list nodes: %w", explain(err))
	}
	return len(nodes.Items), nil
}

// GVR is a shorthand for tests and callers that address resources directly.
func GVR(group, version, resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: group, Version: version, Resource: resource}
}

// applyOrder ranks kinds so that what others depend on is applied first
// (as Helm does): namespaces, identities, configuration, RBAC, workloads.
var applyOrder = map[string]int{
	"Namespace": 0, "ServiceAccount": 1, "Secret": 2, "ConfigMap": 3, "PersistentVolumeClaim": 4,
	"ClusterRole": 5, "ClusterRoleBinding": 6, "Role": 7, "RoleBinding": 8, "Service": 9,
	"Deployment": 10, "DaemonSet": 11, "StatefulSet": 12, "Job": 13,
}

// SortForApply orders objs for applying (stable; unknown kinds last).
func SortForApply(objs []*unstructured.Unstructured) {
	rank := func(o *unstructured.Unstructured) int {
		if r, ok := applyOrder[o.GetKind()]; ok {
			return r
		}
		return len(applyOrder)
	}
	sort.SliceStable(objs, func(i, j int) bool { return rank(objs[i]) < rank(objs[j]) })
}
