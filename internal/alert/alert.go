// Package alert defines vigil's security alert: what the detection engine
// raises, the sensor ships, the hub stores and the portal shows. The JSON
// form follows the alert shape of the design (ARM-style names users of
// Defender for Containers script against).
package alert

import (
	"time"

	"github.com/vigil-sec/vigil/internal/event"
)

// Severity levels, lowest first.
const (
	SeverityInformational = "Informational"
	SeverityLow           = "Low"
	SeverityMedium        = "Medium"
	SeverityHigh          = "High"
)

// Status of an alert.
const (
	StatusActive    = "Active"
	StatusResolved  = "Resolved"
	StatusDismissed = "Dismissed"
)

// Alert is one security alert. Repeats of the same rule on the same
// container and executable within the aggregation window are folded into
// one alert (Count, StartTime..EndTime).
type Alert struct {
	// ID is stable for an aggregated alert: the same rule, node, container
	// and executable within one aggregation window give the same ID, so
	// delivery can be at-least-once and ingest idempotent.
	ID               string    `json:"id"`
	AlertType        string    `json:"alertType"`   // the rule id, e.g. vigil.node/DigitalCurrencyMining
	DisplayName      string    `json:"displayName"` // e.g. "Digital currency mining related behavior detected"
	Description      string    `json:"description"`
	Severity         string    `json:"severity"`
	Status           string    `json:"status"`
	StartTime        time.Time `json:"startTime"`
	EndTime          time.Time `json:"endTime"`
	Count            int       `json:"count"`
	Tactics          []string  `json:"tactics,omitempty"`
	Techniques       []string  `json:"techniques,omitempty"`
	RemediationSteps []string  `json:"remediationSteps,omitempty"`
	// Maturity of the rule that raised it: stable, incubating, sandbox.
	Maturity string `json:"maturity,omitempty"`
	// Detector names the stateful detector that raised it, if any.
	Detector string `json:"detector,omitempty"`
	// ResourceID is the affected resource: the connected cluster's ARM id
	// once the hub knows it, else empty (the node names the host).
	ResourceID string   `json:"resourceId,omitempty"`
	Entities   Entities `json:"entities"`
}

// Entities are what the alert is about.
type Entities struct {
	Node      string              `json:"node,omitempty"`
	Namespace string              `json:"namespace,omitempty"`
	Pod       string              `json:"pod,omitempty"`
	Container *event.Container    `json:"container,omitempty"`
	Process   *Process            `json:"process,omitempty"`
	Parent    *Process            `json:"parentProcess,omitempty"`
	Ancestry  []event.ProcessRef  `json:"ancestry,omitempty"`
	Network   *Network            `json:"network,omitempty"`
	File      string              `json:"file,omitempty"`
	Syscall   *event.Syscall      `json:"syscall,omitempty"`
	Facts     map[string]string   `json:"facts,omitempty"` // detector evidence, e.g. "cpuPercent": "97"
	Event     *event.Event        `json:"-"`               // the triggering event (not serialised)
	Extra     map[string][]string `json:"extra,omitempty"`
}

// Process is a process entity.
type Process struct {
	Path        string `json:"path,omitempty"`
	CommandLine string `json:"commandLine,omitempty"`
	PID         int    `json:"pid,omitempty"`
	UID         uint32 `json:"uid"`
	User        string `json:"user,omitempty"`
	// StartTime is omitted when unknown (see FromMatch).
	StartTime time.Time `json:"startTime,omitzero"`
}

// Network is a network peer entity.
type Network struct {
	IP     string `json:"ip,omitempty"`
	Port   uint16 `json:"port,omitempty"`
	Domain string `json:"domain,omitempty"`
}
