package notify

import (
	"crypto/sha256"
	"encoding/hex"
	"path"
	"strings"
	"time"
	"unicode"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/store"
)

// FalcoPayload is a Falco alert as Falco's http_output sends it and
// falcosidekick accepts it.
type FalcoPayload struct {
	UUID         string         `json:"uuid"`
	Output       string         `json:"output"`
	Priority     string         `json:"priority"`
	Rule         string         `json:"rule"`
	Time         time.Time      `json:"time"`
	OutputFields map[string]any `json:"output_fields"`
	Source       string         `json:"source"`
	Tags         []string       `json:"tags"`
	Hostname     string         `json:"hostname,omitempty"`
}

// FalcoPriority maps a vigil severity to a Falco priority:
//
//	High → Critical, Medium → Warning, Low → Notice, Informational → Informational
//
// High is Critical rather than Error because vigil's High alerts are
// likely compromises (miners, web shells, token theft) that should page,
// as Falco's own Critical rules do; falcosidekick outputs filtered with
// minimumpriority "critical" then receive exactly vigil's High alerts.
func FalcoPriority(severity string) string {
	switch _, canon, _ := severityRank(severity); canon {
	case alert.SeverityHigh:
		return "Critical"
	case alert.SeverityMedium:
		return "Warning"
	case alert.SeverityLow:
		return "Notice"
	default:
		return "Informational"
	}
}

// ToFalco converts an alert to a Falco payload. The rule is the alert's
// display name (Falco rules have human names; the stable alert type is in
// output_fields["vigil.alert_type"]); output is a one-line text like
// Falco's: "<time>: <Priority> <display name> (key=value ...)"; the
// output fields use Falco's field names where one fits (k8s.ns.name,
// container.image.repository, proc.cmdline, fd.rip, ...) and vigil.* for
// the rest. The uuid is derived from the alert id, so a retried delivery
// carries the same uuid.
func ToFalco(a store.Alert) FalcoPayload {
	t := alertTime(a).UTC()
	prio := FalcoPriority(a.Severity)
	out := t.Format(time.RFC3339Nano) + ": " + prio + " " + oneLine(a.DisplayName)
	if s := summary(a); s != "" {
		out += " (" + s + ")"
	}
	return FalcoPayload{
		UUID:         uuidFor(a.ID),
		Output:       out,
		Priority:     prio,
		Rule:         firstNonEmpty(a.DisplayName, a.AlertType),
		Time:         t,
		OutputFields: falcoFields(a),
		Source:       "vigil",
		Tags:         falcoTags(a),
		Hostname:     a.Entities.Node,
	}
}

func falcoFields(a store.Alert) map[string]any {
	f := map[string]any{
		"vigil.alert_id":   a.ID,
		"vigil.alert_type": a.AlertType,
		"vigil.severity":   a.Severity,
		"vigil.count":      a.Count,
	}
	str := func(k, v string) {
		if v != "" {
			f[k] = v
		}
	}
	str("vigil.cluster", clusterID(a))
	str("vigil.status", a.Status)
	str("vigil.detector", a.Detector)
	str("vigil.maturity", a.Maturity)
	if !a.StartTime.IsZero() {
		f["vigil.start_time"] = a.StartTime.UTC().Format(time.RFC3339Nano)
	}
	for k, v := range a.Entities.Facts {
		str("vigil.fact."+k, v)
	}
	e := a.Entities
	str("k8s.ns.name", e.Namespace)
	str("k8s.pod.name", e.Pod)
	if c := e.Container; c != nil {
		if c.Host {
			f["container.id"] = "host"
		} else {
			str("container.id", shortID(c.ID))
			str("container.name", c.Name)
			str("container.image", c.Image)
			repo, tag, digest := splitImage(c.Image)
			str("container.image.repository", repo)
			str("container.image.tag", tag)
			str("container.image.digest", digest)
			if e.Namespace == "" {
				str("k8s.ns.name", c.Namespace)
			}
			if e.Pod == "" {
				str("k8s.pod.name", c.Pod)
			}
		}
	}
	if p := e.Process; p != nil {
		str("proc.exepath", p.Path)
		if p.Path != "" {
			f["proc.name"] = path.Base(p.Path)
		}
		str("proc.cmdline", p.CommandLine)
		if p.PID != 0 {
			f["proc.pid"] = p.PID
		}
		f["user.uid"] = p.UID
		str("user.name", p.User)
	}
	if p := e.Parent; p != nil {
		str("proc.pexepath", p.Path)
		if p.Path != "" {
			f["proc.pname"] = path.Base(p.Path)
		}
		str("proc.pcmdline", p.CommandLine)
		if p.PID != 0 {
			f["proc.ppid"] = p.PID
		}
	}
	if n := e.Network; n != nil {
		str("fd.rip", n.IP)
		if n.Port != 0 {
			f["fd.rport"] = n.Port
		}
		str("fd.rip.name", n.Domain)
	}
	if e.File != "" {
		f["fd.name"] = e.File
	} else if n := e.Network; n != nil && n.IP != "" {
		f["fd.name"] = joinHostPort(n.IP, n.Port)
	}
	if s := e.Syscall; s != nil {
		str("evt.type", s.Name)
	}
	return f
}

// splitImage splits "registry:5000/app/web:1.2@sha256:…" into repository,
// tag and digest.
func splitImage(img string) (repo, tag, digest string) {
	if img == "" {
		return "", "", ""
	}
	repo = img
	if i := strings.Index(repo, "@"); i >= 0 {
		repo, digest = repo[:i], repo[i+1:]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo, tag = repo[:i], repo[i+1:]
	}
	return repo, tag, digest
}

// falcoTags are "vigil", the MITRE tactics as Falco spells them
// (mitre_privilege_escalation) and the technique ids (T1496).
func falcoTags(a store.Alert) []string {
	tags := []string{"vigil"}
	for _, t := range a.Tactics {
		tags = append(tags, "mitre_"+snake(t))
	}
	tags = append(tags, a.Techniques...)
	return tags
}

// snake turns "PrivilegeEscalation" or "Privilege Escalation" into
// "privilege_escalation".
func snake(s string) string {
	var b strings.Builder
	prevLower := false
	for _, r := range strings.TrimSpace(s) {
		switch {
		case r == ' ' || r == '-' || r == '_':
			if b.Len() > 0 {
				b.WriteByte('_')
			}
			prevLower = false
			continue
		case unicode.IsUpper(r) && prevLower:
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToLower(r))
		prevLower = unicode.IsLower(r) || unicode.IsDigit(r)
	}
	return b.String()
}

// uuidFor derives a stable RFC 9562 version-8 UUID from an alert id.
func uuidFor(id string) string {
	sum := sha256.Sum256([]byte("vigil-alert:" + id))
	u := sum[:16]
	u[6] = (u[6] & 0x0f) | 0x80 // version 8
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 9562 variant
	h := hex.EncodeToString(u)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
