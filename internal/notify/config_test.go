package notify

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/internal/store"
)

func TestInvalidOutputSettingsAreReportedByName(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o644)
	cases := []struct {
		name    string
		out     store.Output
		setting string
		mention string
	}{
		{"unknown type", store.Output{Type: "email"}, "type", "webhook or syslog"},
		{"bad min severity", store.Output{Type: "webhook", MinSeverity: "Critical", Config: map[string]string{"url": "http://x"}}, "minSeverity", "Informational, Low, Medium or High"},
		{"webhook without url", store.Output{Type: "webhook"}, "url", "missing"},
		{"webhook url not http", store.Output{Type: "webhook", Config: map[string]string{"url": "ftp://x/y"}}, "url", "http(s)"},
		{"webhook bad format", store.Output{Type: "webhook", Config: map[string]string{"url": "http://x", "format": "xml"}}, "format", "json"},
		{"webhook bad timeout", store.Output{Type: "webhook", Config: map[string]string{"url": "http://x", "timeout": "ten"}}, "timeout", "duration"},
		{"webhook timeout out of range", store.Output{Type: "webhook", Config: map[string]string{"url": "http://x", "timeout": "1h"}}, "timeout", "out of range"},
		{"webhook negative retries", store.Output{Type: "webhook", Config: map[string]string{"url": "http://x", "retries": "-1"}}, "retries", "0 to 20"},
		{"webhook bad header name", store.Output{Type: "webhook", Config: map[string]string{"url": "http://x", "header.Bad Name": "v"}}, "header.Bad Name", "header name"},
		{"webhook unreadable caFile", store.Output{Type: "webhook", Config: map[string]string{"url": "https://x", "caFile": "/nonexistent/ca.pem"}}, "caFile", "/nonexistent/ca.pem"},
		{"webhook caFile without a certificate", store.Output{Type: "webhook", Config: map[string]string{"url": "https://x", "caFile": notPEM}}, "caFile", "no CA certificate"},
		{"webhook misspelt setting", store.Output{Type: "webhook", Config: map[string]string{"url": "http://x", "retires": "3"}}, "retires", "known settings"},
		{"syslog without address", store.Output{Type: "syslog"}, "address", "host:port"},
		{"syslog address without port", store.Output{Type: "syslog", Config: map[string]string{"address": "siem.example.com"}}, "address", "host:port"},
		{"syslog bad network", store.Output{Type: "syslog", Config: map[string]string{"address": "h:514", "network": "sctp"}}, "network", "udp, tcp or tls"},
		{"syslog bad facility", store.Output{Type: "syslog", Config: map[string]string{"address": "h:514", "facility": "local9"}}, "facility", "local0..local7"},
		{"syslog facility number out of range", store.Output{Type: "syslog", Config: map[string]string{"address": "h:514", "facility": "24"}}, "facility", "0..23"},
		{"syslog caFile without tls", store.Output{Type: "syslog", Config: map[string]string{"address": "h:514", "caFile": notPEM}}, "caFile", "only used with network tls"},
		{"syslog misspelt setting", store.Output{Type: "syslog", Config: map[string]string{"adress": "h:514", "address": "h:514"}}, "adress", "known settings"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.out.Name = "out1"
			_, _, err := Build(tc.out, Options{})
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a *ConfigError", err)
			}
			if ce.Output != "out1" || ce.Setting != tc.setting {
				t.Fatalf("error names output %q setting %q, want out1/%s: %v", ce.Output, ce.Setting, tc.setting, err)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("error %q does not mention %q", err, tc.mention)
			}
		})
	}
}

func TestValidOutputSettingsBuild(t *testing.T) {
	cases := []struct {
		out     store.Output
		wantMin string
	}{
		{store.Output{Type: "webhook", Config: map[string]string{"url": "https://sidekick:2801/", "format": "FALCO", "timeout": "3s", "retries": "0", "backoff": "250ms", "header.Authorization": "Bearer x"}}, "Informational"},
		{store.Output{Type: "Webhook", MinSeverity: "high", Config: map[string]string{"url": "http://127.0.0.1:9/"}}, "High"},
		{store.Output{Type: "syslog", MinSeverity: "Medium", Config: map[string]string{"address": "[::1]:6514", "network": "TLS", "facility": "authpriv", "hostname": "vigil-hub"}}, "Medium"},
		{store.Output{Type: "syslog", Config: map[string]string{"address": "127.0.0.1:514", "facility": "13"}}, "Informational"},
	}
	for _, tc := range cases {
		tc.out.Name = "ok"
		n, minSev, err := Build(tc.out, Options{})
		if err != nil {
			t.Errorf("%+v: %v", tc.out, err)
			continue
		}
		if n.Name() != "ok" || minSev != tc.wantMin {
			t.Errorf("%+v: name %q min %q", tc.out, n.Name(), minSev)
		}
	}
}
