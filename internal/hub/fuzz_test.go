package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"testing"
)

func ingestSeeds() [][]byte {
	valid, _ := json.Marshal(ingestExample)
	two, _ := json.Marshal(batch("s", "g", "c", testAlert("a"), testAlert("b", func(m map[string]any) { m["severity"] = "High" })))
	return [][]byte{
		valid, two,
		[]byte(`{"cluster":"/subscriptions/s/resourceGroups/g/providers/Vigil.Kubernetes/connectedClusters/c","alerts":[]}`),
		[]byte(`{"cluster":"/subscriptions/s/resourceGroups/g/providers/Vigil.Kubernetes/connectedClusters/c","alerts":[null]}`),
		[]byte(`{"cluster":"x","alerts":[{"id":"a"}]}`),
		[]byte(`{"alerts":[{"id":"a","count":"1"}]}`),
		[]byte(`{"cluster":"/subscriptions/s/resourceGroups/g/providers/Vigil.Kubernetes/connectedClusters/c","alerts":[{"id":"a\u0000","alertType":"t\u0000"}]}`),
		[]byte(`[]`), []byte(`null`), []byte(``), []byte(`{}{}`), []byte(`{"alerts":{}}`),
	}
}

// FuzzIngestDecode: the ingest decoder never panics, refuses with 400 or
// 413 only, and whatever it accepts is valid and survives a round trip.
func FuzzIngestDecode(f *testing.F) {
	for _, s := range ingestSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeAlertBatch(data, 5)
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || (ae.status != http.StatusBadRequest && ae.status != http.StatusRequestEntityTooLarge) || ae.message == "" {
				t.Fatalf("refusal is not a 400/413 with a message: %#v", err)
			}
			return
		}
		if len(b.Alerts) > 5 {
			t.Fatalf("accepted %d alerts, limit 5", len(b.Alerts))
		}
		for i := range b.Alerts {
			if err := validateAlert(&b.Alerts[i]); err != nil {
				t.Fatalf("accepted an invalid alert %d: %v", i, err)
			}
		}
		// Round trip: what was accepted encodes and decodes to the same batch.
		alerts := make([]any, len(b.Alerts))
		for i := range b.Alerts {
			alerts[i] = b.Alerts[i]
		}
		again, err := json.Marshal(map[string]any{"cluster": clusterPath(b.Cluster.Subscription, b.Cluster.ResourceGroup, b.Cluster.Name), "node": b.Node, "batchId": b.BatchID, "alerts": alerts})
		if err != nil {
			t.Fatal(err)
		}
		b2, err := decodeAlertBatch(again, 5)
		if err != nil {
			t.Fatalf("re-encoded batch refused: %v\n%s", err, again)
		}
		if !reflect.DeepEqual(normalize(b), normalize(b2)) {
			t.Fatalf("round trip changed the batch:\n%+v\n%+v", b, b2)
		}
	})
}

// normalize compares batches by their JSON (time zones, nil vs empty).
func normalize(b alertBatch) string {
	j, _ := json.Marshal(b)
	return string(j)
}

// FuzzClusterPut sends arbitrary bodies to PUT connectedClusters on the
// real handler and store: the answer is a success or a 400, never a server
// error, and a success is stored exactly as returned.
func FuzzClusterPut(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"location":"eu","tags":{"a":"b"},"properties":{"distribution":"k3s"}}`,
		`{"tags":{"":"x"}}`, `{"tags":null}`, `{"location":5}`, `{"properties":{"connectivityStatus":"Connected"}}`,
		`{"location":"\u0000"}`, `{"tags":{"k":"` + string(make([]byte, 300)) + `"}}`, `[`, `null`, `{"properties":null}`,
		`{"location":"é","tags":{"ü":"\ud800"}}`,
	} {
		f.Add("c1", []byte(s))
	}
	shared := newEnv(f, openSQLite)
	f.Fuzz(func(t *testing.T, name string, body []byte) {
		e := *shared
		e.t = t
		if !nameRE.MatchString(name) {
			name = fmt.Sprintf("c%x", len(name))
		}
		path := clusterPath("s1", "g1", name)
		r := e.do("PUT", path, e.owner, body)
		switch {
		case r.code == 400:
			if r.errCode() == "" {
				t.Fatalf("400 without an ARM error: %s", r.body)
			}
			return
		case r.code != 200 && r.code != 201:
			t.Fatalf("PUT %s %q = %d %s", path, body, r.code, r.body)
		}
		var put, got clusterResource
		if err := json.Unmarshal(r.body, &put); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(e.must(200, "GET", path, e.owner, nil).body, &got); err != nil {
			t.Fatal(err)
		}
		if got.Location != put.Location || !reflect.DeepEqual(got.Tags, put.Tags) || got.Properties.Distribution != put.Properties.Distribution {
			t.Fatalf("stored cluster differs from the PUT answer:\n%+v\n%+v", put, got)
		}
		var in clusterResource
		if json.Unmarshal(body, &in) == nil && (in.Location != put.Location || (len(in.Tags) > 0 && !reflect.DeepEqual(in.Tags, put.Tags))) {
			t.Fatalf("PUT answer differs from the request: sent %+v, got %+v", in, put)
		}
	})
}
