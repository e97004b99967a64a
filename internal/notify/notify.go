// Package notify sends the hub's alerts to external systems: webhooks
// (vigil's own JSON or a Falco-compatible payload that falcosidekick
// accepts) and syslog (RFC 5424 over UDP, TCP or TLS). A Dispatcher fans
// each alert out to every configured output asynchronously, through a
// bounded queue per output, so a slow or dead receiver never slows ingest:
// when a queue is full the alert is dropped for that output, counted and
// logged.
package notify

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/store"
)

// Notifier delivers one alert to one output.
type Notifier interface {
	// Notify delivers a, retrying as the output's settings say; it returns
	// when the alert was delivered, finally failed, or ctx ended.
	Notify(ctx context.Context, a store.Alert) error
	// Name is the output's name (metrics label, log attribute).
	Name() string
}

// Output types.
const (
	TypeWebhook = "webhook"
	TypeSyslog  = "syslog"
)

// ConfigError says which setting of which output is wrong and how to fix
// it. The API returns it as a 400.
type ConfigError struct {
	Output  string // output name
	Setting string // e.g. "url", "minSeverity", "header.Authorization"
	Problem string // what is wrong and what to do
}

func (e *ConfigError) Error() string {
	if e.Setting == "" {
		return fmt.Sprintf("output %q: %s", e.Output, e.Problem)
	}
	return fmt.Sprintf("output %q: setting %q: %s", e.Output, e.Setting, e.Problem)
}

// severityRank orders severities, lowest first; ok is false for an
// unknown one. Matching is case-insensitive.
func severityRank(s string) (rank int, canonical string, ok bool) {
	for i, v := range []string{alert.SeverityInformational, alert.SeverityLow, alert.SeverityMedium, alert.SeverityHigh} {
		if strings.EqualFold(s, v) {
			return i, v, true
		}
	}
	return 0, "", false
}

// rankOf is the rank of an alert's severity; an unknown severity ranks as
// Informational (it passes only an output that takes everything).
func rankOf(s string) int {
	r, _, _ := severityRank(s)
	return r
}

// Options are what notifiers need beyond their own settings.
type Options struct {
	// Logger receives retry and reconnect messages (default slog.Default()).
	Logger *slog.Logger
	// Hostname is the HOSTNAME of syslog messages (default os.Hostname()).
	Hostname string
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
	return o
}

// Build makes the notifier of a configured output after validating every
// setting; the error is a *ConfigError naming the wrong setting. It does
// not contact the receiver. It returns the output's minimum severity in
// canonical spelling (empty MinSeverity means Informational: everything).
func Build(o store.Output, opts Options) (Notifier, string, error) {
	opts = opts.withDefaults()
	if strings.TrimSpace(o.Name) == "" {
		return nil, "", &ConfigError{Output: o.Name, Setting: "name", Problem: "missing: give the output a name"}
	}
	minSev := alert.SeverityInformational
	if o.MinSeverity != "" {
		_, canon, ok := severityRank(o.MinSeverity)
		if !ok {
			return nil, "", &ConfigError{Output: o.Name, Setting: "minSeverity",
				Problem: fmt.Sprintf("%q is not a severity: use Informational, Low, Medium or High", o.MinSeverity)}
		}
		minSev = canon
	}
	var (
		n   Notifier
		err error
	)
	switch strings.ToLower(o.Type) {
	case TypeWebhook:
		n, err = newWebhookFromConfig(o.Name, o.Config, opts)
	case TypeSyslog:
		n, err = newSyslogFromConfig(o.Name, o.Config, opts)
	default:
		return nil, "", &ConfigError{Output: o.Name, Setting: "type",
			Problem: fmt.Sprintf("unknown output type %q: use webhook or syslog", o.Type)}
	}
	if err != nil {
		return nil, "", err
	}
	return n, minSev, nil
}

// settings reads an output's Config map and remembers which keys were
// used, so a misspelt key is reported rather than ignored.
type settings struct {
	output string
	m      map[string]string
	used   map[string]bool
}

func newSettings(output string, m map[string]string) *settings {
	return &settings{output: output, m: m, used: map[string]bool{}}
}

func (s *settings) errorf(key, format string, args ...any) error {
	return &ConfigError{Output: s.output, Setting: key, Problem: fmt.Sprintf(format, args...)}
}

func (s *settings) str(key, def string) string {
	s.used[key] = true
	if v, ok := s.m[key]; ok && strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v)
	}
	return def
}

func (s *settings) duration(key string, def, lo, hi time.Duration) (time.Duration, error) {
	v := s.str(key, "")
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, s.errorf(key, "%q is not a duration: write it like 500ms, 10s or 1m", v)
	}
	if d < lo || d > hi {
		return 0, s.errorf(key, "%s is out of range: use %s to %s", d, lo, hi)
	}
	return d, nil
}

func (s *settings) integer(key string, def, lo, hi int) (int, error) {
	v := s.str(key, "")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, s.errorf(key, "%q is not a whole number from %d to %d", v, lo, hi)
	}
	return n, nil
}

// unknown reports keys that no setting read (prefixed keys such as
// "header.X" are marked used by the caller).
func (s *settings) unknown(known ...string) error {
	for _, k := range slices.Sorted(maps.Keys(s.m)) {
		if !s.used[k] {
			return s.errorf(k, "unknown setting: known settings are %s", strings.Join(known, ", "))
		}
	}
	return nil
}

// readFile reads a file named by a setting (e.g. caFile).
func (s *settings) readFile(key string) ([]byte, error) {
	p := s.str(key, "")
	if p == "" {
		return nil, nil
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, s.errorf(key, "cannot read %s: %v", p, err)
	}
	return b, nil
}

// redactURL keeps only scheme and host: webhook URLs often carry a secret
// in their path or query (Slack, Teams), which must not reach logs.
func redactURL(u *url.URL) string {
	return u.Scheme + "://" + u.Host
}

// clusterID is the ARM id of the alert's cluster.
func clusterID(a store.Alert) string {
	if a.ResourceID != "" {
		return a.ResourceID
	}
	c := a.Cluster
	if c.Subscription == "" || c.Name == "" {
		return ""
	}
	return "/subscriptions/" + c.Subscription + "/resourceGroups/" + c.ResourceGroup +
		"/providers/Vigil.Kubernetes/connectedClusters/" + c.Name
}

// alertTime is when the alert last fired.
func alertTime(a store.Alert) time.Time {
	switch {
	case !a.EndTime.IsZero():
		return a.EndTime
	case !a.StartTime.IsZero():
		return a.StartTime
	case !a.IngestedAt.IsZero():
		return a.IngestedAt
	}
	return time.Now()
}

// summary is the one-line human text of an alert's key entities, shared
// by the Falco output line and the syslog message.
func summary(a store.Alert) string {
	e := a.Entities
	var parts []string
	add := func(k, v string) {
		if v != "" {
			if strings.ContainsAny(v, " \t\"") {
				v = strconv.Quote(v)
			}
			parts = append(parts, k+"="+v)
		}
	}
	add("node", e.Node)
	ns, pod := e.Namespace, e.Pod
	if e.Container != nil {
		if ns == "" {
			ns = e.Container.Namespace
		}
		if pod == "" {
			pod = e.Container.Pod
		}
	}
	add("namespace", ns)
	add("pod", pod)
	if c := e.Container; c != nil && !c.Host {
		add("container", firstNonEmpty(c.Name, shortID(c.ID)))
		add("image", c.Image)
	}
	if p := e.Process; p != nil {
		add("process", p.Path)
		add("cmdline", oneLine(p.CommandLine))
		add("user", firstNonEmpty(p.User, strconv.FormatUint(uint64(p.UID), 10)))
	}
	if p := e.Parent; p != nil {
		add("parent", p.Path)
	}
	if n := e.Network; n != nil {
		if n.IP != "" {
			add("remote", joinHostPort(n.IP, n.Port))
		}
		add("domain", n.Domain)
	}
	add("file", e.File)
	if a.Count > 1 {
		add("count", strconv.Itoa(a.Count))
	}
	return strings.Join(parts, " ")
}

func joinHostPort(ip string, port uint16) string {
	if port == 0 {
		return ip
	}
	if strings.Contains(ip, ":") {
		return "[" + ip + "]:" + strconv.Itoa(int(port))
	}
	return ip + ":" + strconv.Itoa(int(port))
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s)
}
