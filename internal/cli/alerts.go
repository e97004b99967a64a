package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/store"
)

var (
	alertSeverities = []string{alert.SeverityInformational, alert.SeverityLow, alert.SeverityMedium, alert.SeverityHigh}
	alertStatuses   = []string{alert.StatusActive, alert.StatusResolved, alert.StatusDismissed}
)

// alertColumns are the columns of `vigil alerts list -o table|tsv`.
var alertColumns = []clio.Column{
	{Header: "Severity", Path: "severity"},
	{Header: "DisplayName", Path: "displayName"},
	{Header: "Cluster", Path: "cluster.name"},
	{Header: "Namespace/Pod", Path: "join('/', [entities.namespace, entities.pod][?@ != null])"},
	{Header: "Status", Path: "status"},
	{Header: "Count", Path: "count"},
	{Header: "EndTime", Path: "endTime"},
	{Header: "ID", Path: "id"},
}

// alertShowColumns are the lines of `vigil alerts show -o table`.
var alertShowColumns = []clio.Column{
	{Header: "ID", Path: "id"},
	{Header: "DisplayName", Path: "displayName"},
	{Header: "AlertType", Path: "alertType"},
	{Header: "Severity", Path: "severity"},
	{Header: "Status", Path: "status"},
	{Header: "StatusChangedBy", Path: "statusChangedBy"},
	{Header: "Description", Path: "description"},
	{Header: "Cluster", Path: "cluster.name"},
	{Header: "ResourceGroup", Path: "cluster.resourceGroup"},
	{Header: "Node", Path: "entities.node"},
	{Header: "Namespace", Path: "entities.namespace"},
	{Header: "Pod", Path: "entities.pod"},
	{Header: "Container", Path: "entities.container.name"},
	{Header: "Image", Path: "entities.container.image"},
	{Header: "Process", Path: "entities.process.path"},
	{Header: "CommandLine", Path: "entities.process.commandLine"},
	{Header: "Parent", Path: "entities.parentProcess.commandLine"},
	{Header: "File", Path: "entities.file"},
	{Header: "Count", Path: "count"},
	{Header: "StartTime", Path: "startTime"},
	{Header: "EndTime", Path: "endTime"},
	{Header: "Tactics", Path: "tactics"},
	{Header: "Techniques", Path: "techniques"},
	{Header: "Remediation", Path: "remediationSteps"},
	{Header: "Related", Path: "relatedAlerts[*].name"},
}

// alertView is what the CLI prints for an alert: the API's properties
// (the alert shape of the design), whose id is what show and update take.
func alertView(a hubclient.Alert) store.Alert {
	return alertDetailView(a).Alert
}

// alertDetailView is alertView with the related alerts (alerts show).
func alertDetailView(a hubclient.Alert) hubclient.AlertProperties {
	p := a.Properties
	if p.ID == "" {
		p.ID = a.Name
	}
	return p
}

func newAlertsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "List, show and triage security alerts stored by the hub",
		Long: `List, show and triage the security alerts the hub stores. Every verb talks to
the hub ` + "`vigil login`" + ` saved (or --hub/--token/--ca) and acts in one subscription:
--subscription, else the saved one, else "` + hubclient.DefaultSubscription + `".`,
	}
	r := &remoteFlags{}
	r.register(cmd.PersistentFlags())
	cmd.AddCommand(newAlertsListCmd(r), newAlertsShowCmd(r), newAlertsUpdateCmd(r))
	groupRun(cmd)
	return cmd
}

func newAlertsListCmd(r *remoteFlags) *cobra.Command {
	var (
		severity, status                               []string
		clusterName, group, namespace, alertType, text string
		since, until, orderBy                          string
		top                                            int
	)
	o := clio.Options{Output: clio.Table}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List alerts, newest first, with filters",
		Example: `  vigil alerts list --severity High,Medium --since 24h
  vigil alerts list --status Active --cluster prod -o json
  vigil alerts list --query "[?severity=='High'].{Name:displayName, Pod:entities.pod}" -o table`,
		Args: usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			sev, err := canonicalList("severity", severity, alertSeverities)
			if err != nil {
				return err
			}
			st, err := canonicalList("status", status, alertStatuses)
			if err != nil {
				return err
			}
			now := time.Now()
			from, err := parseSince("since", since, now)
			if err != nil {
				return err
			}
			to, err := parseSince("until", until, now)
			if err != nil {
				return err
			}
			if top < 0 {
				return flagUsage("--top %d: give the most alerts to show (0 shows all)", top)
			}
			if orderBy != "" {
				if orderBy, err = canonicalOne("order-by", orderBy, []string{"endTime", "startTime", "severity", "count"}); err != nil {
					return err
				}
			}
			rm, err := r.resolve()
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			as, more, err := rm.client.ListAlerts(cmd.Context(), hubclient.AlertListOptions{
				Subscription: rm.subscription, Severity: sev, Status: st, Cluster: clusterName, ResourceGroup: group,
				Namespace: namespace, AlertType: alertType, Text: text, Since: from, Until: to, OrderBy: orderBy, Top: top,
			})
			if err != nil {
				return fmt.Errorf("list alerts: %w", err)
			}
			views := make([]store.Alert, 0, len(as))
			for _, a := range as {
				views = append(views, alertView(a))
			}
			if err := writeOut(cmd, views, o, alertColumns); err != nil {
				return err
			}
			if more {
				fmt.Fprintf(cmd.ErrOrStderr(), "vigil: showing the first %d alerts; more match: raise --top (0 shows all) or narrow the filters\n", len(views))
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&severity, "severity", nil, "only these severities: Informational, Low, Medium, High (comma-separated)")
	fl.StringSliceVar(&status, "status", nil, "only these statuses: Active, Resolved, Dismissed (comma-separated)")
	fl.StringVar(&clusterName, "cluster", "", "only alerts of this connected cluster (name, or ARM id)")
	fl.StringVar(&group, "resource-group", "", "only alerts of clusters in this resource group")
	fl.StringVar(&namespace, "namespace", "", "only alerts in this Kubernetes namespace")
	fl.StringVar(&alertType, "alert-type", "", "only alerts of this type (rule id), e.g. vigil.node/TestAlert")
	fl.StringVar(&text, "text", "", "only alerts whose name, description, process, pod or image contains this text")
	fl.StringVar(&since, "since", "", "only alerts last seen since: a duration back from now (30m, 24h, 7d) or an RFC 3339 time")
	fl.StringVar(&until, "until", "", "only alerts last seen before: a duration back from now or an RFC 3339 time")
	fl.StringVar(&orderBy, "order-by", "", "sort by endTime (default, newest first), startTime, severity or count")
	fl.IntVar(&top, "top", 1000, "show at most this many alerts (0 shows all)")
	clio.AddFlags(fl, &o)
	return cmd
}

func canonicalOne(flag, v string, valid []string) (string, error) {
	vs, err := canonicalList(flag, []string{v}, valid)
	if err != nil {
		return "", err
	}
	if len(vs) != 1 {
		return "", flagUsage("--%s %q: give exactly one of %v", flag, v, valid)
	}
	return vs[0], nil
}

func newAlertsShowCmd(r *remoteFlags) *cobra.Command {
	o := clio.Options{}
	cmd := &cobra.Command{
		Use:     "show ID",
		Short:   "Show one alert with its entities, process ancestry and remediation",
		Example: "  vigil alerts show 0123456789abcdef0123456789abcdef\n  vigil alerts show ID -o table",
		Args:    usageArgs(1, "the alert's ID (the id column of `vigil alerts list`)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			rm, err := r.resolve()
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			a, err := rm.client.GetAlert(cmd.Context(), rm.subscription, args[0])
			if err != nil {
				return err
			}
			return writeOut(cmd, alertDetailView(a), o, alertShowColumns)
		},
	}
	clio.AddFlags(cmd.Flags(), &o)
	return cmd
}

func newAlertsUpdateCmd(r *remoteFlags) *cobra.Command {
	var status string
	o := clio.Options{}
	cmd := &cobra.Command{
		Use:   "update ID --status Dismissed|Resolved|Active",
		Short: "Change an alert's status (the hub records who and when)",
		Example: `  vigil alerts update 0123456789abcdef0123456789abcdef --status Dismissed
  vigil alerts update ID --status Active    # reopen`,
		Args: usageArgs(1, "the alert's ID (the id column of `vigil alerts list`)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if status == "" {
				return flagUsage("--status is required: Dismissed, Resolved or Active")
			}
			st, err := canonicalOne("status", status, alertStatuses)
			if err != nil {
				return err
			}
			rm, err := r.resolve()
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			a, err := rm.client.UpdateAlertStatus(cmd.Context(), rm.subscription, args[0], st)
			if err != nil {
				return err
			}
			return writeOut(cmd, alertDetailView(a), o, alertShowColumns)
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "new status: Dismissed, Resolved or Active (required)")
	clio.AddFlags(cmd.Flags(), &o)
	return cmd
}
