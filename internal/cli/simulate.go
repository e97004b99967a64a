package cli

import "github.com/spf13/cobra"

// simulateCmds are the attack-simulation verbs (vigil simulate).
func simulateCmds(g *globalFlags) []*cobra.Command {
	_ = g
	return nil
}
