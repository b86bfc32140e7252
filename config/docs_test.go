package config

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var updateDocs = flag.Bool("update", false, "rewrite the generated reference in docs/configuration.md")

const (
	docsPath   = "../docs/configuration.md"
	beginMark  = "<!-- BEGIN GENERATED: go test ./config -run TestConfigurationDoc -update -->\n"
	endMark    = "<!-- END GENERATED -->\n"
	tableStart = "| key | default | what it does |\n|---|---|---|\n"
)

// reference renders every option of cfg as Markdown tables, one per TOML
// table, from the same fields and doc tags as Render.
func reference(cfg Config) (string, error) {
	var buf bytes.Buffer
	if err := referenceStruct(&buf, reflect.ValueOf(cfg), ""); err != nil {
		return "", err
	}
	return buf.String(), nil
}

func referenceStruct(buf *bytes.Buffer, v reflect.Value, table string) error {
	t := v.Type()
	title := "top level"
	if table != "" {
		title = "[" + strings.TrimSuffix(table, ".") + "]"
	}
	fmt.Fprintf(buf, "\n### %s\n\n%s", title, tableStart)
	var tables, mapTables []int
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[Duration]() {
			tables = append(tables, i)
			continue
		}
		if f.Type.Kind() == reflect.Map && f.Type.Elem().Kind() == reflect.Struct {
			// A table of named tables ([runtime.handlers.NAME]): one row
			// for the family, then each default entry's own table.
			var names []string
			for _, k := range v.Field(i).MapKeys() {
				names = append(names, "`"+k.String()+"`")
			}
			slices.Sort(names)
			doc := strings.ReplaceAll(f.Tag.Get("doc"), "|", `\|`)
			fmt.Fprintf(buf, "| `%s%s.NAME` | %s | %s |\n", table, f.Tag.Get("toml"), strings.Join(names, ", "), doc)
			mapTables = append(mapTables, i)
			continue
		}
		val, err := tomlValue(v.Field(i).Interface())
		if err != nil {
			return err
		}
		doc := strings.ReplaceAll(f.Tag.Get("doc"), "|", `\|`)
		fmt.Fprintf(buf, "| `%s%s` | `%s` | %s |\n", table, f.Tag.Get("toml"), val, doc)
	}
	for _, i := range tables {
		if err := referenceStruct(buf, v.Field(i), table+t.Field(i).Tag.Get("toml")+"."); err != nil {
			return err
		}
	}
	for _, i := range mapTables {
		keys := v.Field(i).MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			if err := referenceStruct(buf, v.Field(i).MapIndex(k), table+t.Field(i).Tag.Get("toml")+"."+k.String()+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

// docs/configuration.md carries the reference generated from the doc tags,
// so the page cannot drift from the options the daemon accepts: adding,
// renaming or re-documenting an option fails this test until the page is
// regenerated (go test ./config -run TestConfigurationDoc -update).
func TestConfigurationDoc(t *testing.T) {
	page, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	begin, end := bytes.Index(page, []byte(beginMark)), bytes.Index(page, []byte(endMark))
	if begin < 0 || end < begin {
		t.Fatalf("%s lacks the generated-reference markers %q and %q", docsPath, beginMark, endMark)
	}
	want, err := reference(Default())
	if err != nil {
		t.Fatal(err)
	}
	got := string(page[begin+len(beginMark) : end])
	if *updateDocs {
		out := append(append(append([]byte{}, page[:begin+len(beginMark)]...), want...), page[end:]...)
		if err := os.WriteFile(docsPath, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if got != want {
		t.Fatalf("%s is out of date with config's fields and doc tags; run\n\tgo test ./config -run TestConfigurationDoc -update\nwant:\n%s", docsPath, want)
	}
}

// Every key `crid config --default` writes is documented in the page, in
// its table, with its default.
func TestConfigurationDocNamesEveryRenderedKey(t *testing.T) {
	page, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(Default())
	if err != nil {
		t.Fatal(err)
	}
	table, n := "", 0
	keyLine := regexp.MustCompile(`^([a-z_]+) = (.*)$`)
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "[") {
			table = strings.Trim(line, "[]") + "."
			continue
		}
		m := keyLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n++
		row := fmt.Sprintf("| `%s%s` | `%s` |", table, m[1], m[2])
		if !bytes.Contains(page, []byte(row)) {
			t.Errorf("%s has no row %q", docsPath, row)
		}
	}
	if n < 15 {
		t.Fatalf("found only %d keys in crid config --default:\n%s", n, out)
	}
}
