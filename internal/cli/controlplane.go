package cli

import "github.com/spf13/cobra"

// controlPlaneCmds are the control-plane verbs: connect, disconnect, agent,
// extension, verify, preflight, plan, recommendations.
func controlPlaneCmds(g *globalFlags) []*cobra.Command {
	_ = g
	return nil
}
