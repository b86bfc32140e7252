package config

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"

	"github.com/BurntSushi/toml"
)

// Render writes cfg as a commented TOML file: every option, with the one-line
// documentation from its `doc` tag. Top-level scalars come first, then one
// table per nested struct, as TOML requires.
func Render(cfg Config) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# crid configuration. Every option is shown with its default.\n")
	if err := renderStruct(&buf, reflect.ValueOf(cfg), ""); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func renderStruct(buf *bytes.Buffer, v reflect.Value, table string) error {
	t := v.Type()
	var tables, maps []int
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("toml")
		if f.Type.Kind() == reflect.Struct {
			tables = append(tables, i)
			continue
		}
		if f.Type.Kind() == reflect.Map && f.Type.Elem().Kind() == reflect.Struct {
			maps = append(maps, i)
			continue
		}
		val, err := tomlValue(v.Field(i).Interface())
		if err != nil {
			return fmt.Errorf("render %s%s: %w", table, key, err)
		}
		fmt.Fprintf(buf, "\n# %s\n%s = %s\n", f.Tag.Get("doc"), key, val)
	}
	// A map of structs is one table per entry, [table.field.key], after
	// the table's own keys.
	for _, i := range maps {
		f := t.Field(i)
		name := table + f.Tag.Get("toml")
		fmt.Fprintf(buf, "\n# %s\n", f.Tag.Get("doc"))
		keys := v.Field(i).MapKeys()
		sort.Slice(keys, func(a, b int) bool { return keys[a].String() < keys[b].String() })
		for _, k := range keys {
			fmt.Fprintf(buf, "[%s.%s]\n", name, k.String())
			if err := renderStruct(buf, v.Field(i).MapIndex(k), name+"."+k.String()+"."); err != nil {
				return err
			}
		}
	}
	for _, i := range tables {
		name := table + t.Field(i).Tag.Get("toml")
		fmt.Fprintf(buf, "\n[%s]\n", name)
		if err := renderStruct(buf, v.Field(i), name+"."); err != nil {
			return err
		}
	}
	return nil
}

// tomlValue encodes one value through the TOML encoder so quoting and
// escaping follow the same rules the decoder reads.
func tomlValue(v any) (string, error) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(map[string]any{"v": v}); err != nil {
		return "", err
	}
	out := bytes.TrimSpace(buf.Bytes())
	return string(bytes.TrimPrefix(out, []byte("v = "))), nil
}
