package detect

import (
	"testing"

	"github.com/vigil-sec/vigil/internal/event"
)

// TestAuditConditionsMatchTheSameNativelyAndInCEL evaluates conditions over
// every kind of audit field, natively and through the CEL interpreter, on
// an audit event and on a runtime event (where every audit field is empty).
func TestAuditConditionsMatchTheSameNativelyAndInCEL(t *testing.T) {
	ev := &event.Event{Kind: event.KindAudit, Audit: &event.Audit{
		User: "system:serviceaccount:shop:api", ServiceAccountNamespace: "shop", ServiceAccountName: "api",
		Groups: []string{"system:serviceaccounts", "system:authenticated"}, Verb: "list", Resource: "secrets",
		SourceIPs: []string{"10.244.0.17", "192.0.2.2"}, UserAgent: "curl/8.5.0", ResponseCode: 200,
		HostPaths: []string{"/var/run/docker.sock"}, Privileged: true,
	}, Container: &event.Container{Pod: "api-1", Namespace: "shop"}}
	runtime := &event.Event{Kind: event.KindAudit}
	cases := []struct {
		cond           string
		audit, runtime bool
	}{
		{`audit.verb == "list" && audit.resource == "secrets"`, true, false},
		{`audit.serviceAccountNamespace != audit.namespace`, true, false},
		{`audit.responseCode >= 200 && audit.responseCode < 300`, true, false},
		{`audit.allowed`, true, false},
		{`audit.privileged && !audit.hostPID`, true, false},
		{`"system:authenticated" in audit.groups`, true, false},
		{`audit.sourceIPs.exists(ip, ip.startsWith("10.244."))`, true, false},
		{`audit.sourceIP == "10.244.0.17"`, true, false},
		{`size(audit.hostPaths) == 1 && audit.hostPaths[0].endsWith(".sock")`, true, false},
		{`audit.userAgent.matches(r'^curl/')`, true, false},
		{`container.pod == "api-1" && audit.user.startsWith("system:serviceaccount:")`, true, false},
		{`audit.user == ""`, false, true},
	}
	for _, c := range cases {
		t.Run(c.cond, func(t *testing.T) {
			for _, native := range []bool{true, false} {
				var opts []Option
				if !native {
					opts = append(opts, withoutNative())
				}
				e := compileFiles(t, opts, ruleYAML("test/X", "audit", c.cond))
				if got := len(matchIDs(e, ev)) == 1; got != c.audit {
					t.Errorf("native=%v: on the audit event matched %v, want %v", native, got, c.audit)
				}
				if got := len(matchIDs(e, runtime)) == 1; got != c.runtime {
					t.Errorf("native=%v: on an audit event without details matched %v, want %v", native, got, c.runtime)
				}
			}
		})
	}
}
