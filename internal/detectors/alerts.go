package detectors

import (
	"strconv"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/event"
)

// alertSpec is the fixed part of a detector's alert.
type alertSpec struct {
	ruleID, name, description, severity, maturity, detector string
	tactics, techniques, remediation                        []string
}

// newAlert builds the alert for ev (its process, parent, ancestry, container
// and network peer become the entities) with the detector's evidence added
// to the facts.
func (s *Set) newAlert(sp alertSpec, ev *event.Event, evidence map[string]string) *alert.Alert {
	if ev.Node == "" && s.opts.Node != "" {
		cp := *ev
		cp.Node = s.opts.Node
		ev = &cp
	}
	al := alert.FromMatch(sp.ruleID, sp.name, sp.description, sp.severity, sp.maturity,
		sp.tactics, sp.techniques, sp.remediation, ev)
	al.Detector = sp.detector
	if len(evidence) > 0 {
		if al.Entities.Facts == nil {
			al.Entities.Facts = make(map[string]string, len(evidence))
		}
		for k, v := range evidence {
			al.Entities.Facts[k] = v
		}
	}
	return al
}

func itoa(n int) string { return strconv.Itoa(n) }
