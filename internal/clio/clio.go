// Package clio holds the output conventions every vigil read verb shares,
// as the az CLI has them: -o/--output json|table|yaml|tsv and --query, a
// JMESPath expression applied to the JSON form of the result before it is
// printed, plus the exit codes of every verb (exit.go).
//
// The value printed is always the JSON form of what the verb returns: the
// query sees JSON field names (displayName, not DisplayName), and every
// format shows the same data.
package clio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/jmespath/go-jmespath"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Format is an output format.
type Format string

// Output formats.
const (
	JSON  Format = "json"
	Table Format = "table"
	YAML  Format = "yaml"
	TSV   Format = "tsv"
)

// formats lists the valid formats.
var formats = []Format{JSON, Table, YAML, TSV}

// String implements pflag.Value.
func (f *Format) String() string { return string(*f) }

// Set implements pflag.Value: an unknown format is a usage error naming
// the valid ones.
func (f *Format) Set(s string) error {
	v := Format(strings.ToLower(strings.TrimSpace(s)))
	if !slices.Contains(formats, v) {
		return fmt.Errorf("unknown output format %q: use json, table, yaml or tsv", s)
	}
	*f = v
	return nil
}

// Type implements pflag.Value.
func (f *Format) Type() string { return "format" }

// Options are the parsed output flags.
type Options struct {
	Output Format
	Query  string
}

// AddFlags registers -o/--output and --query on fs. The default format is
// o.Output when already set (a verb whose natural form is a table sets it
// to Table first), else json.
func AddFlags(fs *pflag.FlagSet, o *Options) {
	if o.Output == "" {
		o.Output = JSON
	}
	fs.VarP(&o.Output, "output", "o", "output format: json, table, yaml or tsv")
	fs.StringVar(&o.Query, "query", "", "JMESPath query applied to the JSON result, e.g. \"[?severity=='High'].{Name:displayName, Pod:entities.pod}\" (see https://jmespath.org)")
}

// Column is one column of a table (and one field of a tsv row) for a list
// result: Path, a JMESPath expression, picks the value from each element.
type Column struct {
	Header string
	Path   string
}

// Write prints v, any JSON-serialisable value, in the format of o:
//
//   - json: indented JSON, fields in the struct's order; with --query the
//     query's result.
//   - yaml: the same data as YAML.
//   - table: without --query, cols for a list (one row per element; an
//     ARM list envelope {"value":[...]} is tabulated as its elements) and
//     Header/value lines for a single object; with --query (or without
//     cols) the result's own shape as az shows it: a list of objects gets
//     one column per key (scalars only), a list of scalars one "Result"
//     column, an object one row, a scalar itself.
//   - tsv: like table but without headers or alignment: tab-separated
//     scalars, one line per element, for shell scripts.
//
// A --query that does not parse or fails to evaluate is an *ExitError
// with ExitUsage that names the expression and the position.
func Write(w io.Writer, v any, o Options, cols []Column) error {
	raw, err := marshal(v)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	format := o.Output
	if format == "" {
		format = JSON
	}
	query := strings.TrimSpace(o.Query)
	var (
		data     any
		keyOrder []string
	)
	if query != "" || format == Table || format == TSV {
		if err := json.Unmarshal(raw, &data); err != nil {
			return fmt.Errorf("decode output: %w", err)
		}
	}
	if query != "" {
		data, err = runQuery(query, data)
		if err != nil {
			return err
		}
		raw, err = marshal(data)
		if err != nil {
			return fmt.Errorf("encode query result: %w", err)
		}
		keyOrder = queryKeyOrder(query)
		cols = nil // the result's own shape
	} else {
		keyOrder = jsonKeyOrder(raw)
	}

	switch format {
	case JSON:
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return fmt.Errorf("format json: %w", err)
		}
		buf.WriteByte('\n')
		_, err := w.Write(buf.Bytes())
		return err
	case YAML:
		node, err := yamlNode(raw)
		if err != nil {
			return fmt.Errorf("format yaml: %w", err)
		}
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(node); err != nil {
			return fmt.Errorf("format yaml: %w", err)
		}
		return enc.Close()
	case Table, TSV:
		header, rows, err := tabulate(data, cols, keyOrder)
		if err != nil {
			return err
		}
		if format == TSV {
			return writeTSV(w, rows)
		}
		return writeTable(w, header, rows)
	default:
		return Errorf(ExitUsage, "unknown output format %q: use json, table, yaml or tsv", format)
	}
}

// marshal is json.Marshal without HTML escaping (a command line shows
// "<" as "<").
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func runQuery(query string, data any) (any, error) {
	jp, err := jmespath.Compile(query)
	if err != nil {
		var se jmespath.SyntaxError
		if errors.As(err, &se) {
			msg := tokenNames.Replace(strings.TrimPrefix(se.Error(), "SyntaxError: "))
			return nil, Errorf(ExitUsage, "invalid --query %q: %s at position %d (JMESPath syntax: https://jmespath.org):\n  %s\n  %s^",
				query, msg, se.Offset, query, strings.Repeat(" ", se.Offset))
		}
		return nil, Errorf(ExitUsage, "invalid --query %q: %v", query, err)
	}
	res, err := jp.Search(data)
	if err != nil {
		return nil, Errorf(ExitUsage, "--query %q failed: %v", query, err)
	}
	return res, nil
}

// tokenNames makes the parser's token names readable.
var tokenNames = strings.NewReplacer(
	"tUnquotedIdentifier", "identifier", "tQuotedIdentifier", "quoted identifier",
	"tStringLiteral", "string", "tJSONLiteral", "literal", "tNumber", "number",
	"tRbracket", "']'", "tLbracket", "'['", "tRbrace", "'}'", "tLbrace", "'{'",
	"tRparen", "')'", "tLparen", "'('", "tComma", "','", "tColon", "':'",
	"tDot", "'.'", "tPipe", "'|'", "tFilter", "'[?'", "tFlatten", "'[]'",
	"tEOF", "end of expression",
)

// tabulate turns data into a header and rows of cells.
func tabulate(data any, cols []Column, keyOrder []string) ([]string, [][]string, error) {
	if len(cols) > 0 {
		if env, ok := data.(map[string]any); ok {
			if list, ok := env["value"].([]any); ok {
				data = list
			}
		}
		switch d := data.(type) {
		case []any:
			header := make([]string, len(cols))
			paths := make([]*jmespath.JMESPath, len(cols))
			for i, c := range cols {
				header[i] = c.Header
				jp, err := jmespath.Compile(c.Path)
				if err != nil {
					return nil, nil, fmt.Errorf("column %q: bad path %q: %w", c.Header, c.Path, err)
				}
				paths[i] = jp
			}
			rows := make([][]string, 0, len(d))
			for _, el := range d {
				row := make([]string, len(cols))
				for i, jp := range paths {
					v, err := jp.Search(el)
					if err != nil {
						return nil, nil, fmt.Errorf("column %q: %w", cols[i].Header, err)
					}
					row[i] = cell(v)
				}
				rows = append(rows, row)
			}
			return header, rows, nil
		case map[string]any:
			// A single object: one "Header  value" line per column.
			rows := make([][]string, 0, len(cols))
			for _, c := range cols {
				v, err := jmespath.Search(c.Path, d)
				if err != nil {
					return nil, nil, fmt.Errorf("column %q: bad path %q: %w", c.Header, c.Path, err)
				}
				rows = append(rows, []string{c.Header, cell(v)})
			}
			return nil, rows, nil
		}
	}
	return autoShape(data, keyOrder)
}

// autoShape renders a value by its own shape, as az does for --query.
func autoShape(data any, keyOrder []string) ([]string, [][]string, error) {
	switch d := data.(type) {
	case nil:
		return nil, nil, nil
	case []any:
		objects := len(d) > 0
		for _, el := range d {
			if _, ok := el.(map[string]any); !ok {
				objects = false
				break
			}
		}
		if !objects {
			rows := make([][]string, 0, len(d))
			for _, el := range d {
				if l, ok := el.([]any); ok { // a list of lists: one row each
					row := make([]string, 0, len(l))
					for _, x := range l {
						row = append(row, cell(x))
					}
					rows = append(rows, row)
					continue
				}
				rows = append(rows, []string{cell(el)})
			}
			return []string{"Result"}, rows, nil
		}
		keys := scalarKeys(d, keyOrder)
		rows := make([][]string, 0, len(d))
		for _, el := range d {
			m := el.(map[string]any)
			row := make([]string, len(keys))
			for i, k := range keys {
				row[i] = cell(m[k])
			}
			rows = append(rows, row)
		}
		return keys, rows, nil
	case map[string]any:
		keys := scalarKeys([]any{d}, keyOrder)
		row := make([]string, len(keys))
		for i, k := range keys {
			row[i] = cell(d[k])
		}
		return keys, [][]string{row}, nil
	default:
		return nil, [][]string{{cell(d)}}, nil
	}
}

// scalarKeys are the keys holding a scalar in at least one object, in
// keyOrder first, then alphabetically. Nested objects and lists are left
// out of tables (use -o json or a --query that picks them).
func scalarKeys(objs []any, keyOrder []string) []string {
	seen := map[string]bool{}
	for _, o := range objs {
		for k, v := range o.(map[string]any) {
			if isScalar(v) {
				seen[k] = true
			}
		}
	}
	keys := make([]string, 0, len(seen))
	for _, k := range keyOrder {
		if seen[k] {
			keys = append(keys, k)
			delete(seen, k)
		}
	}
	rest := make([]string, 0, len(seen))
	for k := range seen {
		rest = append(rest, k)
	}
	slices.Sort(rest)
	return append(keys, rest...)
}

func isScalar(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return false
	}
	return true
}

// cell formats a value for a table or tsv cell: a list of scalars is
// comma-separated, other nested values are compact JSON; line breaks and tabs become spaces so a row stays one
// line.
func cell(v any) string {
	var s string
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		s = x
	case bool:
		s = strconv.FormatBool(x)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			s = strconv.FormatInt(int64(x), 10)
		} else {
			s = strconv.FormatFloat(x, 'f', -1, 64)
		}
	case []any:
		// A list of scalars reads best comma-separated.
		parts := make([]string, 0, len(x))
		for _, el := range x {
			if !isScalar(el) {
				parts = nil
				break
			}
			parts = append(parts, cell(el))
		}
		if parts != nil || len(x) == 0 {
			s = strings.Join(parts, ", ")
			break
		}
		b, err := marshal(x)
		if err != nil {
			return fmt.Sprint(x)
		}
		s = string(b)
	default:
		b, err := marshal(x)
		if err != nil {
			s = fmt.Sprint(x)
		} else {
			s = string(b)
		}
	}
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

func writeTable(w io.Writer, header []string, rows [][]string) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	line := func(cells []string) {
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if len(header) > 0 {
		line(header)
		dashes := make([]string, len(header))
		for i, h := range header {
			width := len([]rune(h))
			for _, r := range rows {
				if i < len(r) {
					width = max(width, len([]rune(r[i])))
				}
			}
			dashes[i] = strings.Repeat("-", width)
		}
		line(dashes)
	}
	for _, r := range rows {
		line(r)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// No trailing blanks after an empty last cell.
	var out bytes.Buffer
	for l := range bytes.Lines(buf.Bytes()) {
		out.Write(bytes.TrimRight(l, " \n"))
		out.WriteByte('\n')
	}
	_, err := w.Write(out.Bytes())
	return err
}

func writeTSV(w io.Writer, rows [][]string) error {
	var buf bytes.Buffer
	for _, r := range rows {
		buf.WriteString(strings.Join(r, "\t"))
		buf.WriteByte('\n')
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// jsonKeyOrder returns the keys, in document order, of the top-level
// object, or of the first element of a top-level array (or of an ARM
// {"value":[...]} envelope).
func jsonKeyOrder(raw []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil
	}
	switch tok {
	case json.Delim('['):
		if !dec.More() {
			return nil
		}
		if t, err := dec.Token(); err != nil || t != json.Delim('{') {
			return nil
		}
		return objectKeys(dec)
	case json.Delim('{'):
		return objectKeys(dec)
	}
	return nil
}

// objectKeys reads the rest of an object whose '{' was consumed.
func objectKeys(dec *json.Decoder) []string {
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return keys
		}
		k, _ := t.(string)
		keys = append(keys, k)
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return keys
		}
	}
	return keys
}

// queryKeyOrder recovers the key order of the last top-level multi-select
// hash of a query ("[].{Name:name, Sev:severity}" → Name, Sev): JMESPath
// results are Go maps, which forget the order the user wrote.
func queryKeyOrder(q string) []string {
	depth := 0
	start, end := -1, -1
	var quote rune
	for i, r := range q {
		if quote != 0 {
			if r == quote && (i == 0 || q[i-1] != '\\') {
				quote = 0
			}
			continue
		}
		switch r {
		case '\'', '"', '`':
			quote = r
		case '[', '(', '{':
			if r == '{' && depth == 0 {
				start = i
			}
			depth++
		case ']', ')', '}':
			depth--
			if r == '}' && depth == 0 && start >= 0 {
				end = i
			}
		}
	}
	if start < 0 || end < start {
		return nil
	}
	body := q[start+1 : end]
	// Split on top-level commas, take the text before each top-level ':'.
	var keys []string
	depth, quote = 0, 0
	part := 0
	colonSeen := false
	for i, r := range body + "," {
		if quote != 0 {
			if r == quote && (i == 0 || body[i-1] != '\\') {
				quote = 0
			}
			continue
		}
		switch r {
		case '\'', '"', '`':
			quote = r
		case '[', '(', '{':
			depth++
		case ']', ')', '}':
			depth--
		case ':':
			if depth == 0 && !colonSeen {
				colonSeen = true
				k := strings.TrimSpace(body[part:i])
				if uq, err := strconv.Unquote(k); err == nil && strings.HasPrefix(k, `"`) {
					k = uq
				}
				keys = append(keys, k)
			}
		case ',':
			if depth == 0 {
				part = i + 1
				colonSeen = false
			}
		}
	}
	return keys
}

// yamlNode converts JSON to a YAML node tree keeping the key order.
func yamlNode(raw []byte) (*yaml.Node, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	n, err := yamlValue(dec)
	if err != nil {
		return nil, err
	}
	return &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{n}}, nil
}

func yamlValue(dec *json.Decoder) (*yaml.Node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := yamlValue(dec)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, v)
			}
			_, err := dec.Token() // '}'
			return n, err
		case '[':
			n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
			for dec.More() {
				v, err := yamlValue(dec)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, v)
			}
			_, err := dec.Token() // ']'
			return n, err
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case string:
		n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: t}
		if strings.Contains(t, "\n") {
			n.Style = yaml.LiteralStyle
		}
		return n, nil
	case json.Number:
		tag := "!!int"
		if strings.ContainsAny(string(t), ".eE") {
			tag = "!!float"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: string(t)}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(t)}, nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}, nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}
