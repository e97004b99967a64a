package hubclient

import (
	"strings"
	"testing"
)

func TestLinksToAnotherHostAreNotFollowedWithTheToken(t *testing.T) {
	c, err := New(Config{Hub: "https://hub.example:8443/base", Token: "vgl_x"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		in   string
		want string // "" means refused
	}{
		{"/subscriptions/default/providers/Vigil.Security/alerts", "https://hub.example:8443/base/subscriptions/default/providers/Vigil.Security/alerts?api-version=" + APIVersion},
		{"https://hub.example:8443/base/subscriptions/s/providers/Vigil.Security/alerts?%24skipToken=abc&api-version=" + APIVersion, "https://hub.example:8443/base/subscriptions/s/providers/Vigil.Security/alerts?%24skipToken=abc&api-version=" + APIVersion},
		{"/healthz", "https://hub.example:8443/base/healthz"},
		{"https://evil.example/subscriptions/s/providers/Vigil.Security/alerts", ""},
		{"http://hub.example:8443/subscriptions/s", ""},
	}
	for _, tc := range cases {
		u, err := c.resolve(tc.in, nil)
		if tc.want == "" {
			if err == nil || !strings.Contains(err.Error(), "not following") {
				t.Errorf("resolve(%q) = %v, %v; want a refusal", tc.in, u, err)
			}
			continue
		}
		if err != nil || u.String() != tc.want {
			t.Errorf("resolve(%q) = %v, %v; want %s", tc.in, u, err, tc.want)
		}
	}
}
