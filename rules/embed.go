// Package rules holds vigil's default detection catalog: YAML rule files
// (lists, macros and rules, see docs/rules.md) embedded into the binary.
//
// The files are loaded in name order; base.yaml (shared lists and macros)
// sorts first. Every rule has recorded-event test cases under testdata/
// (see rules_test.go): a rule added without a positive and a negative case
// fails the tests.
package rules

import "embed"

// FS holds the default rule files (*.yaml).
//
//go:embed *.yaml
var FS embed.FS
