package cli

import "github.com/spf13/cobra"

// controlPlaneCmds are the control-plane verbs: connect, disconnect, agent,
// extension, verify, preflight, plan, recommendations.
func controlPlaneCmds(g *globalFlags) []*cobra.Command {
	return []*cobra.Command{newConnectCmd(), newDisconnectCmd(), newAgentCmd(g), newExtensionCmd(), newPlanCmd(), newRecommendationsCmd(), newVerifyCmd(), newPreflightCmd()}
}
