package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/extcatalog"
	"github.com/vigil-sec/vigil/internal/hubclient"
)

type recommendationView struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	DisplayName string `json:"displayName"`
	Severity    string `json:"severity"`
	ResourceID  string `json:"resourceId"`
	Description string `json:"description"`
	Remediation string `json:"remediation"`
	Fixable     bool   `json:"fixable"`
}

func toRecommendationView(r hubclient.Recommendation) recommendationView {
	return recommendationView{ID: r.ID, Name: r.Name, DisplayName: r.Properties.DisplayName, Severity: r.Properties.Severity,
		ResourceID: r.Properties.ResourceID, Description: r.Properties.Description, Remediation: r.Properties.Remediation, Fixable: fixable(r.Name)}
}

// The recommendation kinds `fix` remedies (the hub names them kind-resource).
const (
	recInstallSensor = "installSensor"
	recEnablePlan    = "enableContainersPlan"
)

func recKind(name string) string {
	k, _, _ := strings.Cut(name, "-")
	return k
}

func fixable(name string) bool {
	k := recKind(name)
	return k == recInstallSensor || k == recEnablePlan
}

var recommendationColumns = []clio.Column{
	{Header: "Name", Path: "name"}, {Header: "Severity", Path: "severity"}, {Header: "DisplayName", Path: "displayName"},
	{Header: "Resource", Path: "resourceId"}, {Header: "Fixable", Path: "fixable"},
}

func newRecommendationsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "recommendations",
		Short: "List recommendations and fix them (e.g. install the sensor on connected clusters)",
	}
	r := &remoteFlags{}
	r.register(cmd.PersistentFlags())
	cmd.AddCommand(newRecommendationsListCmd(r), newRecommendationsFixCmd(r))
	groupRun(cmd)
	return cmd
}

func newRecommendationsListCmd(r *remoteFlags) *cobra.Command {
	o := clio.Options{Output: clio.Table}
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List the subscription's recommendations",
		Example: "  vigil recommendations list\n  vigil recommendations list --query \"[?fixable].name\" -o tsv",
		Args:    usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			rm, err := r.resolve()
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			rs, err := rm.client.ListRecommendations(cmd.Context(), rm.subscription)
			if err != nil {
				return err
			}
			views := make([]recommendationView, 0, len(rs))
			for _, x := range rs {
				views = append(views, toRecommendationView(x))
			}
			return writeOut(cmd, views, o, recommendationColumns)
		},
	}
	clio.AddFlags(cmd.Flags(), &o)
	return cmd
}

func newRecommendationsFixCmd(r *remoteFlags) *cobra.Command {
	var noWait bool
	cmd := &cobra.Command{
		Use:   "fix ID",
		Short: "Remedy a recommendation (installSensor-…: create the vigil.sensor extension; enableContainersPlan-…: turn the plan on)",
		Example: "  vigil recommendations list --query \"[?fixable].name\" -o tsv\n" +
			"  vigil recommendations fix installSensor-resourceGroups-platform-providers-Vigil.Kubernetes-connectedClusters-prod",
		Args: usageArgs(1, "the recommendation's name or id (from `vigil recommendations list`)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			rm, err := r.resolve()
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			rs, err := rm.client.ListRecommendations(cmd.Context(), rm.subscription)
			if err != nil {
				return err
			}
			var rec *hubclient.Recommendation
			for i := range rs {
				if rs[i].Name == args[0] || rs[i].ID == args[0] {
					rec = &rs[i]
				}
			}
			if rec == nil {
				return clio.Errorf(clio.ExitNotFound, "recommendation %q is not (or no longer) listed: see `vigil recommendations list`", args[0])
			}
			switch recKind(rec.Name) {
			case recEnablePlan:
				if _, err := rm.client.PutPlan(cmd.Context(), rm.subscription, hubclient.PlanProperties{PricingTier: "Standard"}); err != nil {
					return fmt.Errorf("turn the Containers plan on: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "fixed %s: the Containers plan of subscription %s is on\n", rec.Name, rm.subscription)
				return nil
			case recInstallSensor:
				ref, err := auth.ParseClusterID(rec.Properties.ResourceID)
				if err != nil {
					return fmt.Errorf("recommendation %s names resource %q, not a cluster: %w", rec.Name, rec.Properties.ResourceID, err)
				}
				t := &extTarget{cluster: ref.Name, group: ref.ResourceGroup, clusterType: "connectedClusters", name: "vigil-sensor"}
				s := &extensionSpecFlags{extType: extcatalog.SensorType, noWait: noWait, timeout: extensionWaitDefault}
				r2 := *r
				r2.subscription = ref.Subscription
				if err := putExtension(cmd, &r2, t, s, clio.Options{Output: clio.Table}, true); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "fixed %s: extension vigil-sensor created on cluster %s\n", rec.Name, ref.Name)
				return nil
			}
			return clio.Errorf(clio.ExitGeneral, "recommendation %s cannot be fixed automatically: %s", rec.Name, rec.Properties.Remediation)
		},
	}
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the created extension to be Succeeded")
	return cmd
}
