package cli

import (
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/hubclient"
)

// planComponents maps the CLI's component names to the hub's.
var planComponents = map[string]string{"sensor": "runtimeDetection", "audit": "auditDetection"}

type planView struct {
	ID          string          `json:"id"`
	Plan        string          `json:"plan"`
	PricingTier string          `json:"pricingTier"`
	Enabled     bool            `json:"enabled"`
	Components  map[string]bool `json:"components"`
	UpdatedBy   string          `json:"updatedBy,omitempty"`
}

func toPlanView(p hubclient.Plan) planView {
	v := planView{ID: p.ID, Plan: "containers", PricingTier: p.Properties.PricingTier, Enabled: p.Properties.PricingTier == "Standard",
		Components: map[string]bool{}, UpdatedBy: p.Properties.UpdatedBy}
	for cli, hub := range planComponents {
		v.Components[cli] = p.Properties.Components[hub]
	}
	return v
}

var planColumns = []clio.Column{
	{Header: "Plan", Path: "plan"}, {Header: "PricingTier", Path: "pricingTier"}, {Header: "Components", Path: "components"}, {Header: "UpdatedBy", Path: "updatedBy"},
}

func newPlanCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show and set the Containers plan of a subscription",
		Long: `The Containers plan turns runtime threat detection on (pricing tier Standard) or off (Free) for a
subscription, with its components: sensor (runtime detection) and audit (audit-log detection).`,
	}
	r := &remoteFlags{}
	r.register(cmd.PersistentFlags())
	cmd.AddCommand(newPlanSetCmd(r), newPlanShowCmd(r))
	groupRun(cmd)
	return cmd
}

func checkPlanName(p string) error {
	if !strings.EqualFold(p, "containers") {
		return flagUsage("--plan %q is unknown: the only plan is containers", p)
	}
	return nil
}

func newPlanSetCmd(r *remoteFlags) *cobra.Command {
	var plan string
	var comps []string
	var enabled bool
	o := clio.Options{}
	cmd := &cobra.Command{
		Use:     "set --plan containers [--components sensor=on|off ...] [--enabled=false]",
		Short:   "Turn the Containers plan on or off and choose its components (needs an Owner token)",
		Example: "  vigil plan set --subscription default --plan containers --components sensor=on audit=off",
		Args:    usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkPlanName(plan); err != nil {
				return err
			}
			kv, err := parseKV("components", comps)
			if err != nil {
				return err
			}
			props := hubclient.PlanProperties{PricingTier: "Free", Components: map[string]bool{}}
			if enabled {
				props.PricingTier = "Standard"
			}
			keys := make([]string, 0, len(kv))
			for k := range kv {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				hubName, ok := planComponents[strings.ToLower(k)]
				if !ok {
					return flagUsage("--components %s is not a component: use sensor or audit", k)
				}
				switch strings.ToLower(kv[k]) {
				case "on", "true":
					props.Components[hubName] = true
				case "off", "false":
					props.Components[hubName] = false
				default:
					return flagUsage("--components %s=%s: use on or off", k, kv[k])
				}
			}
			rm, err := r.resolve()
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			p, err := rm.client.PutPlan(cmd.Context(), rm.subscription, props)
			if err != nil {
				return fmt.Errorf("set the Containers plan of subscription %s: %w", rm.subscription, err)
			}
			return writeOut(cmd, toPlanView(p), o, planColumns)
		},
	}
	cmd.Flags().StringVar(&plan, "plan", "", "plan name: containers (required)")
	cmd.Flags().StringSliceVar(&comps, "components", nil, "components name=on|off: sensor, audit (repeat or comma-separate; unnamed ones follow the plan)")
	cmd.Flags().BoolVar(&enabled, "enabled", true, "turn the plan on (Standard) or off (Free)")
	clio.AddFlags(cmd.Flags(), &o)
	return cmd
}

func newPlanShowCmd(r *remoteFlags) *cobra.Command {
	plan := "containers"
	o := clio.Options{}
	cmd := &cobra.Command{
		Use:   "show [--plan containers]",
		Short: "Show the Containers plan",
		Args:  usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkPlanName(plan); err != nil {
				return err
			}
			rm, err := r.resolve()
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			p, err := rm.client.GetPlan(cmd.Context(), rm.subscription)
			if err != nil {
				return err
			}
			return writeOut(cmd, toPlanView(p), o, planColumns)
		},
	}
	cmd.Flags().StringVar(&plan, "plan", plan, "plan name: containers")
	clio.AddFlags(cmd.Flags(), &o)
	return cmd
}
