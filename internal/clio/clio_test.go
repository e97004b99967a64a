package clio

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

type testEntities struct {
	Pod       string `json:"pod"`
	Namespace string `json:"namespace"`
}

type testAlert struct {
	Name     string       `json:"name"`
	Severity string       `json:"severity"`
	Count    int          `json:"count"`
	Tactics  []string     `json:"tactics,omitempty"`
	Entities testEntities `json:"entities"`
}

var testAlerts = []testAlert{
	{Name: "miner <xmrig>", Severity: "High", Count: 3, Tactics: []string{"Execution", "Impact"}, Entities: testEntities{Pod: "web-1", Namespace: "web"}},
	{Name: "shell", Severity: "Medium", Count: 1, Entities: testEntities{Pod: "db-0", Namespace: "data"}},
}

var testCols = []Column{
	{Header: "Name", Path: "name"},
	{Header: "Severity", Path: "severity"},
	{Header: "Pod", Path: "entities.pod"},
	{Header: "Tactics", Path: "tactics"},
}

func TestWriteRendersEachFormat(t *testing.T) {
	cases := []struct {
		name string
		v    any
		o    Options
		cols []Column
		want string
	}{
		{
			name: "json keeps the struct's field order and does not escape html",
			v:    testAlerts[1],
			o:    Options{Output: JSON},
			want: `{
  "name": "shell",
  "severity": "Medium",
  "count": 1,
  "entities": {
    "pod": "db-0",
    "namespace": "data"
  }
}
`,
		},
		{
			name: "json with a query prints the query result",
			v:    testAlerts,
			o:    Options{Output: JSON, Query: "[?severity=='High'].name"},
			want: "[\n  \"miner <xmrig>\"\n]\n",
		},
		{
			name: "yaml keeps the field order",
			v:    testAlerts[:1],
			o:    Options{Output: YAML},
			want: `- name: miner <xmrig>
  severity: High
  count: 3
  tactics:
    - Execution
    - Impact
  entities:
    pod: web-1
    namespace: web
`,
		},
		{
			name: "yaml quotes strings that would read as other types",
			v:    map[string]any{"a": "true", "b": "123", "c": 7},
			o:    Options{Output: YAML},
			want: "a: \"true\"\nb: \"123\"\nc: 7\n",
		},
		{
			name: "table of a list uses the columns",
			v:    testAlerts,
			o:    Options{Output: Table},
			cols: testCols,
			want: `Name           Severity  Pod    Tactics
-------------  --------  -----  -----------------
miner <xmrig>  High      web-1  Execution, Impact
shell          Medium    db-0
`,
		},
		{
			name: "table of an ARM list envelope tabulates its elements",
			v:    map[string]any{"value": testAlerts[1:]},
			o:    Options{Output: Table},
			cols: testCols[:2],
			want: "Name   Severity\n-----  --------\nshell  Medium\n",
		},
		{
			name: "table of a single object is header and value per line",
			v:    testAlerts[0],
			o:    Options{Output: Table},
			cols: testCols[:3],
			want: "Name      miner <xmrig>\nSeverity  High\nPod       web-1\n",
		},
		{
			name: "table with a query shows the result's shape in the query's key order",
			v:    testAlerts,
			o:    Options{Output: Table, Query: "[].{Sev:severity, \"The Pod\":entities.pod, N:count}"},
			cols: testCols,
			want: "Sev     The Pod  N\n------  -------  -\nHigh    web-1    3\nMedium  db-0     1\n",
		},
		{
			name: "table with a query for scalars has one Result column",
			v:    testAlerts,
			o:    Options{Output: Table, Query: "[].entities.namespace"},
			cols: testCols,
			want: "Result\n------\nweb\ndata\n",
		},
		{
			name: "table with a query for one scalar prints it",
			v:    testAlerts,
			o:    Options{Output: Table, Query: "length(@)"},
			want: "2\n",
		},
		{
			name: "table without columns shows scalar fields in struct order",
			v:    testAlerts,
			o:    Options{Output: Table},
			want: "name           severity  count\n-------------  --------  -----\nminer <xmrig>  High      3\nshell          Medium    1\n",
		},
		{
			name: "tsv has no header and one line per element",
			v:    testAlerts,
			o:    Options{Output: TSV},
			cols: testCols,
			want: "miner <xmrig>\tHigh\tweb-1\tExecution, Impact\nshell\tMedium\tdb-0\t\n",
		},
		{
			name: "tsv with a query",
			v:    testAlerts,
			o:    Options{Output: TSV, Query: "[].[name, count]"},
			want: "miner <xmrig>\t3\nshell\t1\n",
		},
		{
			name: "tsv flattens line breaks in a cell",
			v:    []map[string]string{{"cmd": "sh -c 'a\nb'\tx"}},
			o:    Options{Output: TSV, Query: "[].cmd"},
			want: "sh -c 'a b' x\n",
		},
		{
			name: "an empty list prints only the table header",
			v:    []testAlert{},
			o:    Options{Output: Table},
			cols: testCols[:2],
			want: "Name  Severity\n----  --------\n",
		},
		{
			name: "no format means json",
			v:    map[string]int{"n": 1},
			o:    Options{},
			want: "{\n  \"n\": 1\n}\n",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, tc.v, tc.o, tc.cols); err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != tc.want {
				t.Fatalf("got:\n%s\nwant:\n%s\n(got %q)", got, tc.want, got)
			}
		})
	}
}

func TestABadQueryIsAUsageErrorNamingTheExpressionAndPosition(t *testing.T) {
	cases := []struct {
		query   string
		mention []string
	}{
		{"[?severity=='High'", []string{`"[?severity=='High'"`, "position"}},
		{"foo bar", []string{`"foo bar"`, "position 4"}},
		{"length(@, @)", []string{`"length(@, @)"`, "failed"}},
	}
	for _, tc := range cases {
		t.Run(tc.query, func(t *testing.T) {
			err := Write(&bytes.Buffer{}, testAlerts, Options{Output: JSON, Query: tc.query}, nil)
			if ExitCode(err) != ExitUsage {
				t.Fatalf("err = %v, exit code %d, want %d", err, ExitCode(err), ExitUsage)
			}
			for _, m := range tc.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func TestTheOutputFlagAcceptsOnlyKnownFormats(t *testing.T) {
	cases := []struct {
		args    []string
		want    Format
		wantErr bool
	}{
		{nil, JSON, false},
		{[]string{"-o", "table"}, Table, false},
		{[]string{"--output=YAML"}, YAML, false},
		{[]string{"-o", "tsv", "--query", "[].name"}, TSV, false},
		{[]string{"-o", "xml"}, "", true},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.args), func(t *testing.T) {
			var o Options
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			fs.SetOutput(&bytes.Buffer{})
			AddFlags(fs, &o)
			err := fs.Parse(tc.args)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "json, table, yaml or tsv") {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Output != tc.want {
				t.Fatalf("output = %q, want %q", o.Output, tc.want)
			}
		})
	}
}

func TestAVerbCanDefaultToTable(t *testing.T) {
	o := Options{Output: Table}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	AddFlags(fs, &o)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if o.Output != Table {
		t.Fatalf("default = %q", o.Output)
	}
	if def := fs.Lookup("output").DefValue; def != "table" {
		t.Fatalf("help shows default %q", def)
	}
}

func TestExitCodes(t *testing.T) {
	base := errors.New("cluster 'x' not found")
	cases := []struct {
		name string
		err  error
		want int
	}{
		{"nil is success", nil, ExitOK},
		{"a plain error is general", base, ExitGeneral},
		{"an exit error keeps its code", Exit(ExitNotFound, base), ExitNotFound},
		{"wrapping keeps the code", fmt.Errorf("show cluster: %w", Exit(ExitUnauthorized, base)), ExitUnauthorized},
		{"Errorf", Errorf(ExitUnreachable, "dial hub: %w", base), ExitUnreachable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := ExitCode(tc.err); got != tc.want {
				t.Fatalf("ExitCode = %d, want %d", got, tc.want)
			}
		})
	}
	if Exit(ExitNotFound, nil) != nil {
		t.Fatal("Exit of a nil error is not nil")
	}
	if err := Errorf(ExitUnreachable, "dial hub: %w", base); !errors.Is(err, base) || err.Error() != "dial hub: cluster 'x' not found" {
		t.Fatalf("Errorf: %v", err)
	}
}
