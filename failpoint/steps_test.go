package failpoint

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestStepsListEveryInject parses every Go file of the module and checks
// that each Inject call names a point of Steps and each point of Steps is
// called somewhere: a new step cannot be forgotten by the crash suite, and
// a removed one cannot linger in it.
func TestStepsListEveryInject(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found above the failpoint package: %v", err)
	}
	inCode := map[string]string{} // name → first position
	dynamic := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") || filepath.Dir(path) == filepath.Join(root, "failpoint") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 1 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Inject" {
				return true
			}
			if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "failpoint" {
				return true
			}
			pos := fset.Position(call.Pos()).String()
			switch arg := call.Args[0].(type) {
			case *ast.BasicLit:
				name, err := strconv.Unquote(arg.Value)
				if err != nil {
					t.Errorf("%s: bad point name %s", pos, arg.Value)
					return true
				}
				if _, seen := inCode[name]; !seen {
					inCode[name] = pos
				}
			case *ast.BinaryExpr:
				lit, ok := arg.X.(*ast.BasicLit)
				if ok && lit.Value == strconv.Quote(DynamicPrefix) {
					dynamic++
					return true
				}
				t.Errorf("%s: point name is built at run time: only %q + method is allowed", pos, DynamicPrefix)
			default:
				t.Errorf("%s: point name is not a string literal", pos)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if dynamic != 1 {
		t.Errorf("found %d %q+method call sites, want the monitor's one", dynamic, DynamicPrefix)
	}
	listed := map[string]bool{}
	for _, s := range Steps {
		if listed[s.Name] {
			t.Errorf("step %s listed twice", s.Name)
		}
		listed[s.Name] = true
		if s.RPC == "" || (s.Process != Daemon && s.Process != Monitor) {
			t.Errorf("step %+v: want an RPC and a process (%s or %s)", s, Daemon, Monitor)
		}
		rest, isDynamic := strings.CutPrefix(s.Name, DynamicPrefix)
		if isDynamic && !strings.Contains(rest, ".") {
			continue // the monitor's entry point for method rest
		}
		if _, ok := inCode[s.Name]; !ok {
			t.Errorf("step %s is listed but no failpoint.Inject names it", s.Name)
		}
	}
	for _, k := range Knobs {
		if listed[k] {
			t.Errorf("knob %s is also a step", k)
		}
		if _, ok := inCode[k]; !ok {
			t.Errorf("knob %s is listed but no failpoint.Inject names it", k)
		}
		listed[k] = true
	}
	for name, pos := range inCode {
		if !listed[name] {
			t.Errorf("%s: failpoint.Inject(%q) is not in failpoint.Steps (nor Knobs)", pos, name)
		}
	}
	if len(inCode) < 40 {
		t.Errorf("found only %d points in the code: is the scan looking at the module?", len(inCode))
	}
}

// TestOnce: with OnceEnvVar a point acts at its first hit only, in any
// process that shares the directory.
func TestOnce(t *testing.T) {
	dir := t.TempDir()
	onceDir = dir
	defer func() { onceDir = "" }()
	if !firstHit("a") || firstHit("a") || !firstHit("b") {
		t.Fatal("firstHit does not act exactly once per name")
	}
	if _, err := os.Stat(filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkInjectUnarmed measures the cost of a point in a process with no
// armed points: what every production call pays.
func BenchmarkInjectUnarmed(b *testing.B) {
	for b.Loop() {
		if err := Inject("sandbox.run.after-dir"); err != nil {
			b.Fatal(err)
		}
	}
}
