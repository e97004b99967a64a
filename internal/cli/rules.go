package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/vigil-sec/vigil/internal/alert"
	"github.com/vigil-sec/vigil/internal/detect"
	"github.com/vigil-sec/vigil/internal/detectors"
	"github.com/vigil-sec/vigil/internal/event"
	"github.com/vigil-sec/vigil/internal/sensorcmd"
)

// ruleSource selects the rules a command works on (see
// sensorcmd.RuleSource, which implements it for the sensor and these
// commands alike): the embedded defaults (unless --no-default-rules) plus
// user files and directories, later ones overriding, appending to or
// disabling earlier ones.
type ruleSource struct {
	paths     []string
	noDefault bool
	// k8sAPI are addresses of the Kubernetes API server appended to the
	// k8s_api_addresses list (with the environment's KUBERNETES_SERVICE_HOST).
	k8sAPI []string
	getenv func(string) string
}

func (rsrc *ruleSource) flags(cmd *cobra.Command) {
	sensorcmd.RegisterRuleFlags(cmd.Flags(), &rsrc.paths, &rsrc.noDefault, &rsrc.k8sAPI)
}

func (rsrc *ruleSource) shared() *sensorcmd.RuleSource {
	return &sensorcmd.RuleSource{Paths: rsrc.paths, NoDefault: rsrc.noDefault, KubernetesAPI: rsrc.k8sAPI, Getenv: rsrc.getenv}
}

// load reads and merges the selected rules.
func (rsrc *ruleSource) load(extra ...string) (*detect.RuleSet, error) {
	return rsrc.shared().Load(extra...)
}

func (rsrc *ruleSource) engine(extra ...string) (*detect.Engine, error) {
	return rsrc.shared().Engine(extra...)
}

func newRulesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "List, show, validate and test detection rules",
	}
	cmd.AddCommand(newRulesListCmd(), newRulesShowCmd(), newRulesValidateCmd(), newRulesTestCmd())
	return cmd
}

func newRulesListCmd() *cobra.Command {
	var rsrc ruleSource
	var out string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the rules in effect (defaults plus --rules)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := rsrc.engine()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if out == "json" {
				return writeJSON(w, e.Rules())
			}
			if out != "table" {
				return fmt.Errorf("-o %q: use table or json", out)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSEVERITY\tMATURITY\tENABLED\tNAME")
			for _, r := range e.Rules() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\n", r.ID, r.Severity, r.Maturity, r.Enabled, r.Name)
			}
			return tw.Flush()
		},
	}
	rsrc.flags(cmd)
	cmd.Flags().StringVarP(&out, "output", "o", "table", "output format: table or json")
	return cmd
}

func newRulesShowCmd() *cobra.Command {
	var rsrc ruleSource
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one rule: condition, description, MITRE mapping, exceptions, remediation",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := rsrc.engine()
			if err != nil {
				return err
			}
			var ids []string
			for _, r := range e.Rules() {
				if r.ID == args[0] {
					return writeJSON(cmd.OutOrStdout(), r)
				}
				if strings.Contains(strings.ToLower(r.ID), strings.ToLower(args[0])) {
					ids = append(ids, r.ID)
				}
			}
			if len(ids) > 0 {
				return fmt.Errorf("no rule %q; did you mean: %s", args[0], strings.Join(ids, ", "))
			}
			return fmt.Errorf("no rule %q: `vigil rules list` shows the ids", args[0])
		},
	}
	rsrc.flags(cmd)
	return cmd
}

func newRulesValidateCmd() *cobra.Command {
	var rsrc ruleSource
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check rule files (with the defaults they extend) and report file, line and column of every problem",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := rsrc.engine(args...)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "ok: %d rules (%d enabled) compile\n", len(e.Rules()), e.Enabled())
			return err
		},
	}
	rsrc.flags(cmd)
	return cmd
}

func newRulesTestCmd() *cobra.Command {
	var rsrc ruleSource
	var eventsPath string
	var noDetectors bool
	cmd := &cobra.Command{
		Use:   "test [FILE...] --events EVENTS.jsonl",
		Short: "Replay events recorded with `vigil sensor --events-out` through the rules and print what matches",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if eventsPath == "" {
				return fmt.Errorf("--events is required: a JSON-lines file written by `vigil sensor --events-out`")
			}
			e, err := rsrc.engine(args...)
			if err != nil {
				return err
			}
			f, err := os.Open(eventsPath)
			if err != nil {
				return fmt.Errorf("--events: %w", err)
			}
			defer f.Close()
			return replay(cmd.OutOrStdout(), f, e, !noDetectors)
		},
	}
	rsrc.flags(cmd)
	cmd.Flags().StringVar(&eventsPath, "events", "", "recorded events (JSON lines)")
	cmd.Flags().BoolVar(&noDetectors, "no-detectors", false, "do not run the stateful detectors (drift, fan-out, recon) while replaying")
	return cmd
}

// replay feeds recorded events through detectors and rules and prints one
// line per match, then a summary by rule.
func replay(w io.Writer, r io.Reader, e *detect.Engine, withDetectors bool) error {
	counts := map[string]int{}
	var raised []string
	print := func(id, sev string, ev *event.Event) {
		counts[id]++
		ctr := "host"
		if ev.Container != nil && !ev.Container.Host {
			ctr = ev.Container.ID
		}
		raised = append(raised, fmt.Sprintf("%s  %-7s %-40s pid=%d exe=%s container=%s cmdline=%q",
			ev.Time.Format("15:04:05.000"), sev, id, ev.Process.PID, ev.Process.Exe, ctr,
			alert.CommandLine(ev.Process.Args, ev.Process.ArgsTruncated)))
	}
	var dets *detectors.Set
	if withDetectors {
		dets = detectors.New(detectors.Options{RulesRaiseFactAlerts: true}, func(al *alert.Alert) {
			if ev := al.Entities.Event; ev != nil {
				print(al.AlertType, al.Severity, ev)
			}
		})
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	line, n := 0, 0
	for sc.Scan() {
		line++
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		var ev event.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("--events line %d: not an event (%v): record events with `vigil sensor --events-out FILE`", line, err)
		}
		n++
		if dets != nil {
			dets.Observe(&ev)
		}
		e.Evaluate(&ev, func(r *detect.Rule, ev *event.Event) { print(r.ID, r.Severity, ev) })
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("--events: %w", err)
	}
	for _, l := range raised {
		fmt.Fprintln(w, l)
	}
	ids := make([]string, 0, len(counts))
	for id := range counts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	fmt.Fprintf(w, "%d events replayed, %d matches\n", n, len(raised))
	for _, id := range ids {
		fmt.Fprintf(w, "  %6d  %s\n", counts[id], id)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
