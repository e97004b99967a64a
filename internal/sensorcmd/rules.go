package sensorcmd

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/rules"
)

// RuleSource selects the rules a command works on: the embedded defaults
// (unless NoDefault) plus user files and directories, later ones
// overriding, appending to or disabling earlier ones.
type RuleSource struct {
	// Paths are rule files or directories (--rules).
	Paths []string
	// NoDefault leaves out the embedded catalog (--no-default-rules).
	NoDefault bool
	// KubernetesAPI are addresses of the Kubernetes API server appended to
	// the k8s_api_addresses list, with the environment's
	// KUBERNETES_SERVICE_HOST (--kubernetes-api).
	KubernetesAPI []string
	// Getenv reads the environment (default os.Getenv; tests replace it).
	Getenv func(string) string
}

// Register adds --rules, --no-default-rules and --kubernetes-api to fl.
func (r *RuleSource) Register(fl *pflag.FlagSet) {
	RegisterRuleFlags(fl, &r.Paths, &r.NoDefault, &r.KubernetesAPI)
}

// RegisterRuleFlags adds the rule selection flags bound to the given
// variables (for commands that keep them in their own struct).
func RegisterRuleFlags(fl *pflag.FlagSet, paths *[]string, noDefault *bool, k8sAPI *[]string) {
	fl.StringSliceVar(paths, "rules", nil, "rule file or directory (*.yaml) loaded after the defaults (repeatable)")
	fl.BoolVar(noDefault, "no-default-rules", false, "do not load the embedded default catalog")
	fl.StringSliceVar(k8sAPI, "kubernetes-api", nil, "IP address of this cluster's Kubernetes API server or its service (repeatable); appended to the k8s_api_addresses rule list, as is $KUBERNETES_SERVICE_HOST")
}

// apiAddresses are the Kubernetes API addresses the rules should know:
// --kubernetes-api values and the environment's KUBERNETES_SERVICE_HOST
// (set in every pod, so in the sensor's DaemonSet too).
func (r *RuleSource) apiAddresses() ([]string, error) {
	var out []string
	for _, a := range r.KubernetesAPI {
		ip, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil {
			return nil, fmt.Errorf("--kubernetes-api %q: not an IP address; give the API service's ClusterIP or an API server's address (e.g. 10.96.0.1)", a)
		}
		out = append(out, ip.Unmap().String())
	}
	getenv := r.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	if h := getenv("KUBERNETES_SERVICE_HOST"); h != "" {
		if ip, err := netip.ParseAddr(h); err == nil && !slices.Contains(out, ip.Unmap().String()) {
			out = append(out, ip.Unmap().String())
		}
	}
	return out, nil
}

// Load reads and merges the selected rules, then the extra paths.
func (r *RuleSource) Load(extra ...string) (*detect.RuleSet, error) {
	var rs *detect.RuleSet
	if !r.NoDefault {
		def, err := detect.LoadFS(rules.FS, "*.yaml")
		if err != nil {
			return nil, fmt.Errorf("default rules: %w", err)
		}
		rs = def
	}
	paths := append(append([]string(nil), r.Paths...), extra...)
	if len(paths) > 0 {
		user, err := detect.LoadFiles(paths...)
		if err != nil {
			return nil, err
		}
		if rs == nil {
			rs = user
		} else if err := rs.Merge(user); err != nil {
			return nil, err
		}
	}
	if rs == nil {
		return nil, fmt.Errorf("no rules: --no-default-rules needs --rules PATH")
	}
	addrs, err := r.apiAddresses()
	if err != nil {
		return nil, err
	}
	// Rule sets without the list (--no-default-rules with rules of one's
	// own) simply do not use the addresses.
	if len(addrs) > 0 && slices.ContainsFunc(rs.Lists(), func(l *detect.List) bool { return l.Name == "k8s_api_addresses" }) {
		if err := rs.AppendList("k8s_api_addresses", "--kubernetes-api/KUBERNETES_SERVICE_HOST", addrs...); err != nil {
			return nil, err
		}
	}
	return rs, nil
}

// Engine loads the selected rules (and extra paths) and compiles them.
func (r *RuleSource) Engine(extra ...string) (*detect.Engine, error) {
	rs, err := r.Load(extra...)
	if err != nil {
		return nil, err
	}
	return detect.Compile(rs)
}

// WatchRules reloads the rules on SIGHUP and when one of paths changes,
// until ctx ends. A rule set that fails to load or compile is logged with
// its position and the last good one stays in force.
func WatchRules(ctx context.Context, r *detect.Reloader, paths []string, log *slog.Logger) {
	if len(paths) > 0 {
		go func() {
			if err := r.Watch(ctx, paths...); err != nil && ctx.Err() == nil {
				log.Error("watching rule files failed; SIGHUP still reloads", "err", err)
			}
		}()
	}
	r.HandleSIGHUP(ctx)
}
