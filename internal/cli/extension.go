package cli

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/vigil-sec/vigil/internal/clio"
	"github.com/vigil-sec/vigil/internal/extcatalog"
	"github.com/vigil-sec/vigil/internal/hubclient"
	"github.com/vigil-sec/vigil/internal/store"
)

// extensionView is what the CLI prints for an extension (az k8s-extension
// show's shape: properties flattened). Protected settings never appear.
type extensionView struct {
	ID                    string                  `json:"id"`
	Name                  string                  `json:"name"`
	ExtensionType         string                  `json:"extensionType"`
	Version               string                  `json:"version,omitempty"`
	ProvisioningState     string                  `json:"provisioningState"`
	ConfigurationSettings map[string]string       `json:"configurationSettings,omitempty"`
	Statuses              []store.ExtensionStatus `json:"statuses,omitempty"`
	Generation            int64                   `json:"generation,omitempty"`
	AppliedGeneration     int64                   `json:"appliedGeneration,omitempty"`
	Message               string                  `json:"message,omitempty"`
	CreatedAt             time.Time               `json:"createdAt,omitzero"`
	UpdatedAt             time.Time               `json:"updatedAt,omitzero"`
}

func toExtensionView(e hubclient.Extension) extensionView {
	p := e.Properties
	v := extensionView{ID: e.ID, Name: e.Name, ExtensionType: p.ExtensionType, Version: p.Version, ProvisioningState: p.ProvisioningState,
		ConfigurationSettings: p.ConfigurationSettings, Statuses: p.Statuses, Generation: p.Generation, AppliedGeneration: p.AppliedGeneration,
		CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
	if n := len(p.Statuses); n > 0 {
		v.Message = p.Statuses[n-1].Message
	}
	return v
}

var extensionColumns = []clio.Column{
	{Header: "Name", Path: "name"},
	{Header: "ExtensionType", Path: "extensionType"},
	{Header: "Version", Path: "version"},
	{Header: "ProvisioningState", Path: "provisioningState"},
	{Header: "Message", Path: "message"},
}

var extensionShowColumns = []clio.Column{
	{Header: "ID", Path: "id"},
	{Header: "Name", Path: "name"},
	{Header: "ExtensionType", Path: "extensionType"},
	{Header: "Version", Path: "version"},
	{Header: "ProvisioningState", Path: "provisioningState"},
	{Header: "Generation", Path: "generation"},
	{Header: "AppliedGeneration", Path: "appliedGeneration"},
	{Header: "ConfigurationSettings", Path: "configurationSettings"},
	{Header: "Message", Path: "message"},
	{Header: "UpdatedAt", Path: "updatedAt"},
}

// extTarget are the flags naming an extension's cluster.
type extTarget struct {
	cluster, group, clusterType, name string
}

func (t *extTarget) register(fs *pflag.FlagSet, withName bool) {
	fs.StringVarP(&t.cluster, "cluster-name", "c", "", "name of the connected cluster (required)")
	fs.StringVarP(&t.group, "resource-group", "g", "", "resource group of the cluster (required)")
	fs.StringVarP(&t.clusterType, "cluster-type", "t", "connectedClusters", "cluster type: connectedClusters")
	if withName {
		fs.StringVarP(&t.name, "name", "n", "", "name of the extension (required)")
	}
}

func (t *extTarget) check(withName bool) error {
	if t.cluster == "" || t.group == "" || (withName && t.name == "") {
		if withName {
			return flagUsage("--cluster-name, --resource-group and --name are required")
		}
		return flagUsage("--cluster-name and --resource-group are required")
	}
	if t.clusterType != "connectedClusters" {
		return flagUsage("--cluster-type %q is not supported: use connectedClusters", t.clusterType)
	}
	return nil
}

type extensionSpecFlags struct {
	extType     string
	settings    []string
	protected   []string
	version     string
	autoUpgrade string
	noWait      bool
	timeout     time.Duration
}

func (s *extensionSpecFlags) register(fs *pflag.FlagSet, create bool) {
	if create {
		fs.StringVar(&s.extType, "extension-type", "", "extension type from the catalog: "+extcatalog.SensorType+" or "+extcatalog.AuditType+" (required)")
	}
	fs.StringArrayVar(&s.settings, "configuration-settings", nil, "a configuration setting key=value (repeat the flag for each; values may hold commas, newlines and =); see `vigil extension types`")
	fs.StringArrayVar(&s.protected, "configuration-protected-settings", nil, "a protected (write-only, sealed at the hub) setting key=value (repeat the flag for each)")
	fs.StringVar(&s.version, "version", "", "catalog version (default: the newest)")
	fs.StringVar(&s.autoUpgrade, "auto-upgrade-minor-version", "", "true or false: accepted for az compatibility; this hub pins the version given (or the newest at creation)")
	fs.BoolVar(&s.noWait, "no-wait", false, "return once the hub accepted the request instead of waiting for Succeeded or Failed")
	fs.DurationVar(&s.timeout, "timeout", extensionWaitDefault, "how long to wait for Succeeded")
}

func newExtensionCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "extension",
		Short: "Create, show, list, update and delete cluster extensions (the sensor)",
		Long: `Manage the extensions of a connected cluster (the az k8s-extension equivalent). The agent in
the cluster reads them, installs them and reports provisioningState. Protected settings are
write-only: the hub seals them and never returns them.`,
	}
	r := &remoteFlags{}
	r.register(cmd.PersistentFlags())
	cmd.AddCommand(newExtensionCreateCmd(r), newExtensionUpdateCmd(r), newExtensionShowCmd(r), newExtensionListCmd(r), newExtensionDeleteCmd(r), newExtensionTypesCmd())
	groupRun(cmd)
	return cmd
}

func newExtensionCreateCmd(r *remoteFlags) *cobra.Command {
	t := &extTarget{}
	s := &extensionSpecFlags{}
	o := clio.Options{}
	cmd := &cobra.Command{
		Use:   "create --cluster-name N --resource-group G --cluster-type connectedClusters --name X --extension-type vigil.sensor",
		Short: "Create an extension and wait until it is Succeeded (or Failed, with the reason)",
		Long: `Create an extension. For vigil.sensor the CLI issues the sensor's ingest token (kind sensor, bound
to the cluster) and passes it as the protected setting hubToken, unless you give one.`,
		Example: `  vigil extension create --cluster-name prod --resource-group platform --cluster-type connectedClusters \
    --name vigil-sensor --extension-type vigil.sensor --configuration-settings logLevel=info --configuration-settings rules.disable=vigil.node/PackageManagerInContainer`,
		Args: usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := t.check(true); err != nil {
				return err
			}
			if s.extType == "" {
				return flagUsage("--extension-type is required: %s or %s", extcatalog.SensorType, extcatalog.AuditType)
			}
			return putExtension(cmd, r, t, s, o, true)
		},
	}
	t.register(cmd.Flags(), true)
	s.register(cmd.Flags(), true)
	clio.AddFlags(cmd.Flags(), &o)
	return cmd
}

func newExtensionUpdateCmd(r *remoteFlags) *cobra.Command {
	t := &extTarget{}
	s := &extensionSpecFlags{}
	o := clio.Options{}
	cmd := &cobra.Command{
		Use:     "update --cluster-name N --resource-group G --cluster-type connectedClusters --name X [--configuration-settings k=v ...]",
		Short:   "Change an extension's settings or version (given keys replace, others stay)",
		Example: "  vigil extension update -c prod -g platform -t connectedClusters -n vigil-sensor --configuration-settings logLevel=debug",
		Args:    usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := t.check(true); err != nil {
				return err
			}
			return putExtension(cmd, r, t, s, o, false)
		},
	}
	t.register(cmd.Flags(), true)
	s.register(cmd.Flags(), false)
	clio.AddFlags(cmd.Flags(), &o)
	return cmd
}

func putExtension(cmd *cobra.Command, r *remoteFlags, t *extTarget, s *extensionSpecFlags, o clio.Options, create bool) error {
	ctx := cmd.Context()
	settings, err := parseKV("configuration-settings", s.settings)
	if err != nil {
		return err
	}
	protected, err := parseKV("configuration-protected-settings", s.protected)
	if err != nil {
		return err
	}
	if s.autoUpgrade != "" {
		if _, err := strconv.ParseBool(s.autoUpgrade); err != nil {
			return flagUsage("--auto-upgrade-minor-version %q: use true or false", s.autoUpgrade)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "note: --auto-upgrade-minor-version is not stored by this hub: the extension stays at version %s until you update it\n", orDefault(s.version, "newest at creation"))
	}
	rm, err := r.resolve()
	if err != nil {
		return err
	}
	defer rm.client.CloseIdleConnections()
	in := hubclient.Extension{}
	if create {
		in.Properties.ExtensionType = s.extType
		in.Properties.ConfigurationSettings = settings
	} else {
		cur, err := rm.client.GetExtension(ctx, rm.subscription, t.group, t.cluster, t.name)
		if err != nil {
			return err
		}
		in.Properties.ExtensionType = cur.Properties.ExtensionType
		in.Properties.Version = cur.Properties.Version
		merged := map[string]string{}
		for k, v := range cur.Properties.ConfigurationSettings {
			merged[k] = v
		}
		for k, v := range settings {
			merged[k] = v
		}
		in.Properties.ConfigurationSettings = merged
	}
	_, ver, err := extcatalog.Lookup(in.Properties.ExtensionType, orDefault(s.version, in.Properties.Version))
	if err != nil {
		return clio.Exit(clio.ExitUsage, err)
	}
	in.Properties.Version = ver
	if err := extcatalog.ValidateSettings(in.Properties.ExtensionType, in.Properties.ConfigurationSettings); err != nil {
		return clio.Exit(clio.ExitUsage, err)
	}
	if create {
		if err := extcatalog.ValidateProtected(in.Properties.ExtensionType, in.Properties.ConfigurationSettings, protected); err != nil {
			return clio.Exit(clio.ExitUsage, err)
		}
	}
	if len(protected) > 0 {
		in.Properties.ConfigurationProtectedSettings = protected
	}
	if create && in.Properties.ExtensionType == extcatalog.SensorType && protected[extcatalog.ProtectedHubToken] == "" {
		cl, err := rm.client.GetCluster(ctx, rm.subscription, t.group, t.cluster)
		if err != nil {
			return fmt.Errorf("find cluster %s: %w", t.cluster, err)
		}
		tok, err := rm.client.CreateToken(ctx, hubclient.TokenCreate{Name: "sensor-" + t.cluster + "-" + t.name, Kind: store.TokenSensor, ClusterID: cl.ID})
		if err != nil {
			return fmt.Errorf("issue the sensor's ingest token: %w", err)
		}
		if in.Properties.ConfigurationProtectedSettings == nil {
			in.Properties.ConfigurationProtectedSettings = map[string]string{}
		}
		in.Properties.ConfigurationProtectedSettings[extcatalog.ProtectedHubToken] = tok.Properties.Secret
	}
	e, err := rm.client.PutExtension(ctx, rm.subscription, t.group, t.cluster, t.name, in)
	if err != nil {
		return err
	}
	if !s.noWait {
		e, err = waitExtension(cmd, rm, t, e.Properties.Generation, s.timeout)
		if err != nil {
			return err
		}
	}
	if err := writeOut(cmd, toExtensionView(e), o, extensionShowColumns); err != nil {
		return err
	}
	if e.Properties.ProvisioningState == store.ProvisioningFailed {
		return clio.Errorf(clio.ExitGeneral, "extension %s is Failed: %s", t.name, toExtensionView(e).Message)
	}
	return nil
}

// waitExtension polls until the extension's generation gen is Succeeded or
// Failed, printing progress on stderr.
func waitExtension(cmd *cobra.Command, rm *remote, t *extTarget, gen int64, timeout time.Duration) (hubclient.Extension, error) {
	start := time.Now()
	last := ""
	for {
		e, err := rm.client.GetExtension(cmd.Context(), rm.subscription, t.group, t.cluster, t.name)
		if err != nil {
			return e, err
		}
		v := toExtensionView(e)
		line := v.ProvisioningState + prefixIf(": ", v.Message)
		if line != last {
			fmt.Fprintf(cmd.ErrOrStderr(), "[%5.1fs] %s\n", time.Since(start).Seconds(), line)
			last = line
		}
		if e.Properties.AppliedGeneration >= gen && (v.ProvisioningState == store.ProvisioningSucceeded || v.ProvisioningState == store.ProvisioningFailed) {
			return e, nil
		}
		if time.Since(start) > timeout {
			return e, clio.Errorf(clio.ExitGeneral, "extension %s is still %s after %s: is the cluster's agent Connected (`vigil cluster show -n %s -g %s`)?", t.name, v.ProvisioningState, timeout, t.cluster, t.group)
		}
		select {
		case <-cmd.Context().Done():
			return e, cmd.Context().Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// open checks the target's flags (named: --name is required) and
// connects to the hub.
func (t *extTarget) open(r *remoteFlags, named bool) (*remote, error) {
	if err := t.check(named); err != nil {
		return nil, err
	}
	return r.resolve()
}

func newExtensionShowCmd(r *remoteFlags) *cobra.Command {
	t := &extTarget{}
	o := clio.Options{}
	cmd := &cobra.Command{
		Use:     "show --cluster-name N --resource-group G --cluster-type connectedClusters --name X",
		Short:   "Show an extension with its provisioning state (never its protected settings)",
		Example: "  vigil extension show -c prod -g platform -t connectedClusters -n vigil-sensor --query provisioningState",
		Args:    usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			rm, err := t.open(r, true)
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			e, err := rm.client.GetExtension(cmd.Context(), rm.subscription, t.group, t.cluster, t.name)
			if err != nil {
				return err
			}
			return writeOut(cmd, toExtensionView(e), o, extensionShowColumns)
		},
	}
	t.register(cmd.Flags(), true)
	clio.AddFlags(cmd.Flags(), &o)
	return cmd
}

func newExtensionListCmd(r *remoteFlags) *cobra.Command {
	t := &extTarget{}
	o := clio.Options{Output: clio.Table}
	cmd := &cobra.Command{
		Use:     "list --cluster-name N --resource-group G --cluster-type connectedClusters",
		Short:   "List a cluster's extensions",
		Example: "  vigil extension list -c prod -g platform -t connectedClusters",
		Args:    usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			rm, err := t.open(r, false)
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			es, err := rm.client.ListExtensions(cmd.Context(), rm.subscription, t.group, t.cluster)
			if err != nil {
				return err
			}
			views := make([]extensionView, 0, len(es))
			for _, e := range es {
				views = append(views, toExtensionView(e))
			}
			return writeOut(cmd, views, o, extensionColumns)
		},
	}
	t.register(cmd.Flags(), false)
	clio.AddFlags(cmd.Flags(), &o)
	return cmd
}

func newExtensionDeleteCmd(r *remoteFlags) *cobra.Command {
	t := &extTarget{}
	var yes, force, noWait bool
	timeout := extensionWaitDefault
	cmd := &cobra.Command{
		Use:     "delete --cluster-name N --resource-group G --cluster-type connectedClusters --name X [--yes]",
		Short:   "Delete an extension; the agent removes its objects from the cluster",
		Example: "  vigil extension delete -c prod -g platform -t connectedClusters -n vigil-sensor --yes",
		Args:    usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			rm, err := t.open(r, true)
			if err != nil {
				return err
			}
			defer rm.client.CloseIdleConnections()
			if err := confirm(cmd, yes, fmt.Sprintf("Delete extension %s of cluster %s?", t.name, t.cluster)); err != nil {
				return err
			}
			if err := rm.client.DeleteExtensionForce(cmd.Context(), rm.subscription, t.group, t.cluster, t.name, force); err != nil {
				return err
			}
			if force || noWait {
				fmt.Fprintf(cmd.OutOrStdout(), "extension %s deleted at the hub; the cluster's agent removes what it finds at its next cycle\n", t.name)
				return nil
			}
			// Applied extensions stay Deleting until the agent confirmed it
			// removed them from the cluster.
			start, said := time.Now(), false
			for {
				_, err := rm.client.GetExtension(cmd.Context(), rm.subscription, t.group, t.cluster, t.name)
				if hubclient.IsStatus(err, http.StatusNotFound) {
					fmt.Fprintf(cmd.OutOrStdout(), "extension %s removed from cluster %s and deleted (%s)\n", t.name, t.cluster, time.Since(start).Round(time.Second))
					return nil
				}
				if err != nil {
					return err
				}
				if !said {
					fmt.Fprintf(cmd.ErrOrStderr(), "extension %s: Deleting — waiting for the cluster's agent to remove it...\n", t.name)
					said = true
				}
				if time.Since(start) > timeout {
					return clio.Errorf(clio.ExitGeneral, "extension %s is still Deleting after %s: is the cluster's agent Connected (`vigil cluster show -n %s -g %s`)? For a cluster that is gone for good, delete it at the hub only with --force", t.name, timeout, t.cluster, t.group)
				}
				select {
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				case <-time.After(time.Second):
				}
			}
		},
	}
	t.register(cmd.Flags(), true)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask")
	cmd.Flags().BoolVar(&force, "force", false, "delete at the hub at once, without waiting for the agent to remove it (a cluster that is gone for good)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "return once the hub accepted the request")
	cmd.Flags().DurationVar(&timeout, "timeout", extensionWaitDefault, "how long to wait for the agent to remove it")
	return cmd
}

func newExtensionTypesCmd() *cobra.Command {
	o := clio.Options{Output: clio.Table}
	cmd := &cobra.Command{
		Use:   "types",
		Short: "List the extension types of the catalog with their versions and settings",
		Args:  usageArgs(0, ""),
		RunE: func(cmd *cobra.Command, _ []string) error {
			type row struct {
				Type      string   `json:"type"`
				Versions  []string `json:"versions"`
				Settings  []string `json:"settings"`
				Protected []string `json:"protectedSettings"`
			}
			var rows []row
			for _, t := range extcatalog.Catalog() {
				r := row{Type: t.Name, Versions: t.Versions}
				for _, s := range t.Settings {
					r.Settings = append(r.Settings, s.Name+": "+s.Help)
				}
				for _, s := range t.Protected {
					r.Protected = append(r.Protected, s.Name+": "+s.Help)
				}
				rows = append(rows, r)
			}
			return writeOut(cmd, rows, o, []clio.Column{{Header: "Type", Path: "type"}, {Header: "Versions", Path: "versions"}, {Header: "Settings", Path: "settings"}})
		},
	}
	clio.AddFlags(cmd.Flags(), &o)
	return cmd
}

// extensionWaitDefault bounds how long create/update wait for Succeeded.
const extensionWaitDefault = 10 * time.Minute
