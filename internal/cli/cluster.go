package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/auth"
	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/hubclient"
)

// clusterView is what the CLI prints for a connected cluster: the ARM id,
// name, subscription and resource group, and the properties flattened
// (as az shows resources).
type clusterView struct {
	ID            string            `json:"id"`
	Name          string            `json:"name"`
	ResourceGroup string            `json:"resourceGroup"`
	Subscription  string            `json:"subscription"`
	Location      string            `json:"location,omitempty"`
	Tags          map[string]string `json:"tags,omitempty"`
	hubclient.ClusterProperties
}

func toClusterView(c hubclient.Cluster) clusterView {
	v := clusterView{ID: c.ID, Name: c.Name, Location: c.Location, Tags: c.Tags, ClusterProperties: c.Properties}
	if ref, err := auth.ParseClusterID(c.ID); err == nil {
		v.Subscription, v.ResourceGroup = ref.Subscription, ref.ResourceGroup
	}
	return v
}

var clusterColumns = []clio.Column{
	{Header: "Name", Path: "name"},
	{Header: "ResourceGroup", Path: "resourceGroup"},
	{Header: "Connectivity", Path: "connectivityStatus"},
	{Header: "Distribution", Path: "distribution"},
	{Header: "Nodes", Path: "totalNodeCount"},
	{Header: "AgentVersion", Path: "agentVersion"},
	{Header: "LastConnectivity", Path: "lastConnectivityTime"},
}

var clusterShowColumns = []clio.Column{
	{Header: "ID", Path: "id"},
	{Header: "Name", Path: "name"},
	{Header: "ResourceGroup", Path: "resourceGroup"},
	{Header: "Subscription", Path: "subscription"},
	{Header: "Location", Path: "location"},
	{Header: "Connectivity", Path: "connectivityStatus"},
	{Header: "Provisioning", Path: "provisioningState"},
	{Header: "Distribution", Path: "distribution"},
	{Header: "KubernetesVersion", Path: "kubernetesVersion"},
	{Header: "AgentVersion", Path: "agentVersion"},
	{Header: "Nodes", Path: "totalNodeCount"},
	{Header: "LastConnectivity", Path: "lastConnectivityTime"},
	{Header: "Tags", Path: "tags"},
	{Header: "CreatedAt", Path: "createdAt"},
}

func newClusterCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "List and show connected clusters",
		Long: `List and show the connected clusters the hub knows, with their connectivity
status. Acts in one subscription: --subscription, else the one ` + "`vigil login`" + ` saved,
else "` + hubclient.DefaultSubscription + `".`,
	}
	r := &remoteFlags{}
	r.register(cmd.PersistentFlags())
	cmd.AddCommand(newClusterListCmd(r), newClusterShowCmd(r))
	groupRun(cmd)
	return cmd
}

func newClusterListCmd(r *remoteFlags) *cobra.Command {
	var group string
	o := clio.Options{Output: clio.Table}
	cmd := &cobra.Command{
		Use:     "list [--resource-group G]",
		Short:   "List connected clusters of the subscription or of one resource group",
		Example: "  vigil cluster list\n  vigil cluster list --resource-group prod -o json",
		Args:    usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			rm, err := r.resolve()
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			cs, err := rm.client.ListClusters(cmd.Context(), rm.subscription, group)
			if err != nil {
				return fmt.Errorf("list clusters: %w", err)
			}
			views := make([]clusterView, 0, len(cs))
			for _, c := range cs {
				views = append(views, toClusterView(c))
			}
			return writeOut(cmd, views, o, clusterColumns)
		},
	}
	cmd.Flags().StringVarP(&group, "resource-group", "g", "", "only clusters of this resource group")
	clio.AddFlags(cmd.Flags(), &o)
	return cmd
}

func newClusterShowCmd(r *remoteFlags) *cobra.Command {
	var name, group string
	o := clio.Options{}
	cmd := &cobra.Command{
		Use:     "show --name N --resource-group G",
		Short:   "Show a connected cluster with its connectivity status",
		Example: "  vigil cluster show --name prod --resource-group platform",
		Args:    usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" || group == "" {
				return flagUsage("--name and --resource-group are required: `vigil cluster list` shows both")
			}
			rm, err := r.resolve()
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			c, err := rm.client.GetCluster(cmd.Context(), rm.subscription, group, name)
			if err != nil {
				return err
			}
			return writeOut(cmd, toClusterView(c), o, clusterShowColumns)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "cluster name (required)")
	cmd.Flags().StringVarP(&group, "resource-group", "g", "", "resource group of the cluster (required)")
	clio.AddFlags(cmd.Flags(), &o)
	return cmd
}
