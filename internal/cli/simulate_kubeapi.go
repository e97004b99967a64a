package cli

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
)

// newSimulateKubeAPICmd is what an intruder does with a pod's service
// account: call the Kubernetes API with the pod's own token (busybox wget
// cannot complete TLS with the API server). It runs inside a pod of vigil's
// image, for the simulation and the audit end-to-end test.
func newSimulateKubeAPICmd() *cobra.Command {
	var userAgent string
	cmd := &cobra.Command{
		Use:    "kube-api METHOD PATH [BODY]",
		Short:  "Call the Kubernetes API as this pod's service account and print the status (runs inside a pod)",
		Hidden: true,
		Args:   cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := rest.InClusterConfig()
			if err != nil {
				return fmt.Errorf("kube-api: %w (run it inside a pod)", err)
			}
			cfg.UserAgent = userAgent
			tr, err := rest.TransportFor(cfg)
			if err != nil {
				return fmt.Errorf("kube-api: %w", err)
			}
			var body io.Reader
			if len(args) == 3 {
				body = strings.NewReader(args[2])
			}
			req, err := http.NewRequestWithContext(cmd.Context(), strings.ToUpper(args[0]), strings.TrimSuffix(cfg.Host, "/")+args[1], body)
			if err != nil {
				return fmt.Errorf("kube-api: %w", err)
			}
			if body != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			res, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Do(req)
			if err != nil {
				return fmt.Errorf("kube-api %s %s: %w", args[0], args[1], err)
			}
			defer res.Body.Close()
			var out bytes.Buffer
			_, _ = io.Copy(&out, io.LimitReader(res.Body, 1<<20))
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%d %s\n", res.StatusCode, strings.TrimSpace(out.String()))
			return err
		},
	}
	cmd.Flags().StringVar(&userAgent, "user-agent", "curl/8.5.0", "User-Agent header to send")
	return cmd
}
