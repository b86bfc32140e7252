package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	specInfo    = "[sig-node] Runtime info runtime should support returning runtime info [Conformance]"
	specStatus  = "[sig-node] Runtime info runtime should support returning runtime status [Conformance]"
	specPull    = "[sig-node] Image Manager public image with tag should be pulled and removed [Conformance]"
	specMetrics = "[sig-node] PodSandbox runtime should support metrics [Conformance]"
	specExec    = "[sig-node] Container runtime should support execSync with timeout [Conformance]"
)

// writeLists writes the two list files into a temp dir and returns their paths.
func writeLists(t *testing.T, expected, cannot string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	e, c := filepath.Join(dir, "expected-pass.txt"), filepath.Join(dir, "cannot-pass.txt")
	if err := os.WriteFile(e, []byte(expected), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c, []byte(cannot), 0o644); err != nil {
		t.Fatal(err)
	}
	return e, c
}

func runCheck(t *testing.T, args ...string) (int, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String() + errOut.String()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// goodLists matches testdata/mixed.xml exactly.
func goodLists(t *testing.T) (string, string) {
	return writeLists(t,
		"# must pass\n\n"+specInfo+"\n[It] "+specStatus+"\n",
		"# cannot pass yet\n"+
			specPull+" | not built yet: images (issue 3)\n"+
			specMetrics+" | not built yet: metrics descriptors (issue 6)\n"+
			specExec+" | not built yet: containers (issue 5)\n")
}

func TestCountsAndSummaryLine(t *testing.T) {
	code, out := runCheck(t, "testdata/mixed.xml")
	if code != 0 {
		t.Fatalf("exit %d without lists, output:\n%s", code, out)
	}
	// 2 passed; failed + panicked = 2 failed; 1 skipped by Skip(); the
	// benchmark spec removed by critest's own filter is not counted, nor are
	// the setup nodes.
	if got, want := lastLine(out), "critest: 2 passed, 2 failed, 1 skipped"; got != want {
		t.Errorf("summary line = %q, want %q", got, want)
	}
	if !strings.Contains(out, "junitcheck: 1 specs not run, removed by the run's own skip filter \"benchmark\"") {
		t.Errorf("filtered benchmark spec not reported:\n%s", out)
	}
}

func TestRatchetHolds(t *testing.T) {
	e, c := goodLists(t)
	code, out := runCheck(t, "-expected-pass", e, "-cannot-pass", c, "testdata/mixed.xml")
	if code != 0 {
		t.Fatalf("exit %d, want 0; output:\n%s", code, out)
	}
	if !strings.Contains(out, "ratchet holds") {
		t.Errorf("no success line:\n%s", out)
	}
	if got := lastLine(out); got != "critest: 2 passed, 2 failed, 1 skipped" {
		t.Errorf("summary line = %q", got)
	}
}

func TestRegressionOfExpectedPass(t *testing.T) {
	e, c := writeLists(t,
		specInfo+"\n"+specStatus+"\n"+specPull+"\n"+specMetrics+"\n",
		specExec+" | not built yet: containers (issue 5)\n")
	code, out := runCheck(t, "-expected-pass", e, "-cannot-pass", c, "testdata/mixed.xml")
	if code != 1 {
		t.Fatalf("exit %d, want 1; output:\n%s", code, out)
	}
	for _, want := range []string{
		"REGRESSION (failed: rpc error: code = Unimplemented desc = PullImage) of a spec in",
		"REGRESSION (skipped: skipped - CRI Metrics endpoints not supported by this runtime version)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got := lastLine(out); got != "critest: 2 passed, 2 failed, 1 skipped" {
		t.Errorf("summary line = %q", got)
	}
}

func TestUnlistedFailure(t *testing.T) {
	e, c := writeLists(t, specInfo+"\n"+specStatus+"\n",
		specPull+" | not built yet: images (issue 3)\n"+
			specMetrics+" | not built yet: metrics descriptors (issue 6)\n")
	code, out := runCheck(t, "-expected-pass", e, "-cannot-pass", c, "testdata/mixed.xml")
	if code != 1 || !strings.Contains(out, "UNLISTED (panicked: boom), in neither list: \""+specExec+"\"") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

func TestMissingFromReportAndStale(t *testing.T) {
	e, c := goodLists(t)
	appendFile(t, e, "[sig-node] a spec that critest no longer has\n")
	appendFile(t, c, "[sig-node] another gone spec | cannot apply: gone\n")
	code, out := runCheck(t, "-expected-pass", e, "-cannot-pass", c, "testdata/mixed.xml")
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{
		`MISSING from the report, listed in ` + e + `: "[sig-node] a spec that critest no longer has"`,
		`STALE: listed in ` + c + ` but not in the report: "[sig-node] another gone spec"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestInBothLists(t *testing.T) {
	e, c := goodLists(t)
	appendFile(t, c, specInfo+" | cannot apply: test\n")
	code, out := runCheck(t, "-expected-pass", e, "-cannot-pass", c, "testdata/mixed.xml")
	if code != 1 || !strings.Contains(out, `in both lists: "`+specInfo+`"`) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestNowPassesIsAHint(t *testing.T) {
	e, c := writeLists(t, specInfo+"\n",
		specStatus+" | not built yet: status (no issue yet)\n"+
			specPull+" | not built yet: images (issue 3)\n"+
			specMetrics+" | not built yet: metrics descriptors (issue 6)\n"+
			specExec+" | not built yet: containers (issue 5)\n")
	code, out := runCheck(t, "-expected-pass", e, "-cannot-pass", c, "testdata/mixed.xml")
	if code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, out)
	}
	if !strings.Contains(out, "hint: now passes, move it from "+c+" to "+e+": \""+specStatus+"\"") {
		t.Errorf("no hint:\n%s", out)
	}
}

func TestMalformedLists(t *testing.T) {
	e, c := writeLists(t, specInfo+"\n"+specStatus+"\n"+specInfo+"\n",
		specPull+" | because\n"+
			specMetrics+"\n"+
			specExec+" | not built yet: containers\n"+
			specExec+" | not built yet: containers (issue 5)\n")
	code, out := runCheck(t, "-expected-pass", e, "-cannot-pass", c, "testdata/mixed.xml")
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{
		e + `:3: "` + specInfo + `" is listed twice`,
		c + `:1: reason "because" must be`,
		c + `:2: want ` + "`<spec name> | <reason>`",
		c + `:3: reason "not built yet: containers" must be`,
		c + `:4: "` + specExec + `" is listed twice`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestFiltersAreRejected(t *testing.T) {
	e, c := goodLists(t)
	code, out := runCheck(t, "-expected-pass", e, "-cannot-pass", c, "testdata/filtered.xml")
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{`FocusStrings="Runtime"`, `SkipStrings="benchmark,Container"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// With a foreign skip filter the benchmark spec is counted as skipped.
	if got := lastLine(out); got != "critest: 2 passed, 2 failed, 2 skipped" {
		t.Errorf("summary line = %q", got)
	}
}

func TestFailedSetupNode(t *testing.T) {
	code, out := runCheck(t, "testdata/setupfail.xml")
	if code != 1 || !strings.Contains(out, `suite setup node "[BeforeSuite]" failed: connection refused`) {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestSingleSuiteRootAndList(t *testing.T) {
	code, out := runCheck(t, "-list", "testdata/single-suite.xml")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{"passed\tspec a\n", "failed\tspec b\n", "skipped\tspec c\n", "critest: 1 passed, 1 failed, 1 skipped"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestInputErrors(t *testing.T) {
	if code, _ := runCheck(t); code != 2 {
		t.Errorf("no report: exit %d, want 2", code)
	}
	if code, _ := runCheck(t, "testdata/does-not-exist.xml"); code != 2 {
		t.Errorf("missing report: exit %d, want 2", code)
	}
	bad := filepath.Join(t.TempDir(), "bad.xml")
	if err := os.WriteFile(bad, []byte("<html></html>"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := runCheck(t, bad); code != 2 || !strings.Contains(out, "root element is <html>") {
		t.Errorf("wrong root: exit %d, %s", code, out)
	}
	if code, _ := runCheck(t, "-expected-pass", "/nonexistent/list", "testdata/mixed.xml"); code != 2 {
		t.Errorf("missing list: exit %d, want 2", code)
	}
	empty := filepath.Join(t.TempDir(), "empty.xml")
	if err := os.WriteFile(empty, []byte(`<testsuites><testsuite name="x"></testsuite></testsuites>`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := runCheck(t, empty); code != 1 || !strings.Contains(out, "the report holds no spec") {
		t.Errorf("empty report: exit %d, %s", code, out)
	}
}

func TestSummarize(t *testing.T) {
	for in, want := range map[string]string{
		"Unexpected error:\n    <*fmt.wrapError | 0x1>: \n    validate service connection: rpc error: code = Unimplemented desc = method ImageFsInfo not implemented\n    {\n": "rpc error: code = Unimplemented desc = method ImageFsInfo not implemented",
		"Expected\n    <string>: a\nto equal\n    <string>: b": "Expected <string>: a to equal <string>: b",
		strings.Repeat("x", 300):                               strings.Repeat("x", 160) + "…",
	} {
		if got := summarize(in); got != want {
			t.Errorf("summarize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSpecName(t *testing.T) {
	for in, want := range map[string]struct {
		name   string
		isSpec bool
	}{
		"[It] [sig-node] a b [Conformance]": {"[sig-node] a b [Conformance]", true},
		"[sig-node] a b":                    {"[sig-node] a b", true},
		"[BeforeSuite]":                     {"", false},
		"[DeferCleanup (Suite)]":            {"", false},
		"[ReportAfterSuite] Autogenerated":  {"Autogenerated", false},
	} {
		name, isSpec := specName(in)
		if name != want.name || isSpec != want.isSpec {
			t.Errorf("specName(%q) = %q, %v; want %q, %v", in, name, isSpec, want.name, want.isSpec)
		}
	}
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// A report with NRI specs gets their counts and the others' on a line of
// their own, before the summary line.
func TestNRISplit(t *testing.T) {
	dir := t.TempDir()
	report := filepath.Join(dir, "nri.xml")
	xml := `<testsuites><testsuite name="critest">
<testcase name="[It] [k8s.io] NRI pod sandbox lifecycle should receive events" status="passed"></testcase>
<testcase name="[It] [k8s.io] NRI plugin synchronization should sync" status="skipped"><skipped message="skipped - NRI socket not configured"></skipped></testcase>
<testcase name="[It] ` + specInfo + `" status="passed"></testcase>
<testcase name="[It] ` + specExec + `" status="failed"><failure message="boom"></failure></testcase>
</testsuite></testsuites>`
	if err := os.WriteFile(report, []byte(xml), 0o644); err != nil {
		t.Fatal(err)
	}
	_, out := runCheck(t, report)
	want := "junitcheck: NRI specs (critest -nri-socket): 1 passed, 0 failed, 1 skipped; the other specs: 1 passed, 1 failed, 0 skipped"
	if !strings.Contains(out, want+"\n") {
		t.Fatalf("output lacks %q:\n%s", want, out)
	}
	if got := lastLine(out); got != "critest: 2 passed, 1 failed, 1 skipped" {
		t.Fatalf("last line %q", got)
	}
	_, out = runCheck(t, "testdata/mixed.xml")
	if strings.Contains(out, "NRI specs") {
		t.Fatalf("a report without NRI specs got an NRI line:\n%s", out)
	}
}

// A declared focus run (run.sh's websocket pass) is accepted, the specs the
// focus left out are counted apart, and the focused ones must all pass.
func TestAllowedFocus(t *testing.T) {
	code, out := runCheck(t, "-allowed-focus", "Streaming", "testdata/focus.xml")
	if code != 0 {
		t.Fatalf("exit %d for a passing declared focus run, output:\n%s", code, out)
	}
	if !strings.Contains(out, `focus "Streaming": 2 specs run, all must pass; 2 not run`) {
		t.Errorf("focus counts missing, output:\n%s", out)
	}
	if got, want := lastLine(out), "critest: 2 passed, 0 failed, 0 skipped"; got != want {
		t.Errorf("last line %q, want %q", got, want)
	}
}

func TestFocusNotDeclaredOrDifferent(t *testing.T) {
	for _, args := range [][]string{
		{"testdata/focus.xml"},                                   // no declared focus: any focus is an error
		{"-allowed-focus", "Runtime", "testdata/focus.xml"},      // a different focus
		{"-allowed-focus", "Streaming", "testdata/mixed.xml"},    // declared, but the report has none
		{"-allowed-focus", "Streaming", "testdata/filtered.xml"}, // declared, the report has another
	} {
		if code, out := runCheck(t, args...); code != 1 {
			t.Errorf("%v: exit %d, want 1; output:\n%s", args, code, out)
		}
	}
}

func TestFocusedSpecMustPass(t *testing.T) {
	data, err := os.ReadFile("testdata/focus.xml")
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(data),
		`should support attach [Conformance]" classname="CRI validation" status="passed" time="1.2"></testcase>`,
		`should support attach [Conformance]" classname="CRI validation" status="failed" time="1.2"><failure message="websocket: bad handshake" type="failed"></failure></testcase>`, 1)
	if bad == string(data) {
		t.Fatal("testdata/focus.xml changed: the replacement did not apply")
	}
	p := filepath.Join(t.TempDir(), "focus-fail.xml")
	if err := os.WriteFile(p, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runCheck(t, "-allowed-focus", "Streaming", p)
	if code != 1 || !strings.Contains(out, "should support attach [Conformance]\" did not pass") {
		t.Errorf("exit %d, want 1 naming the failed spec; output:\n%s", code, out)
	}
}

// The node e2e suite runs with a focus and a skip filter of its own and
// ratchet lists: the specs the filters remove are counted apart, the focused
// ones answer to the lists (a listed failure is no error), and the summary
// line carries the suite's name. Without lists every focused spec must pass.
func TestDeclaredFocusWithLists(t *testing.T) {
	dir := t.TempDir()
	expected := filepath.Join(dir, "expected-pass.txt")
	cannot := filepath.Join(dir, "cannot-pass.txt")
	if err := os.WriteFile(expected, []byte("[sig-node] Pods should be submitted and removed [NodeConformance]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cannot, []byte("[sig-node] Probing container should restart [NodeConformance] | cannot apply: test\n"+
		"[sig-node] AppArmor should enforce [NodeConformance] | cannot apply: no AppArmor\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-name", "node-e2e", "-allowed-focus", `\[NodeConformance\]`, "-allowed-skip", `\[Serial\]|\[Slow\]`}
	code, out := runCheck(t, append(args, "-expected-pass", expected, "-cannot-pass", cannot, "testdata/nodee2e.xml")...)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	if got := lastLine(out); got != "node-e2e: 1 passed, 1 failed, 1 skipped" {
		t.Errorf("summary line = %q", got)
	}
	if !strings.Contains(out, "the lists say which must pass; 1 not run, left out by the focus") ||
		!strings.Contains(out, "1 specs not run, removed by the run's own skip filter") {
		t.Errorf("filtered specs not reported:\n%s", out)
	}
	if code, out = runCheck(t, append(args, "testdata/nodee2e.xml")...); code != 1 || !strings.Contains(out, "did not pass") {
		t.Errorf("exit %d without lists, want the failed focused spec reported:\n%s", code, out)
	}
	code, out = runCheck(t, "-name", "node-e2e", "-allowed-focus", `\[Conformance\]`, "-allowed-skip", `\[Serial\]|\[Slow\]`, "testdata/nodee2e.xml")
	if code != 1 {
		t.Errorf("exit %d with a foreign focus:\n%s", code, out)
	}
}
