// Command junitcheck reads the JUnit report of a critest run, prints its
// counts and enforces crid's conformance ratchet.
//
// Usage:
//
//	junitcheck [-expected-pass FILE] [-cannot-pass FILE] [-list]
//	           [-name critest] [-allowed-focus RE] [-allowed-skip RE] REPORT.xml...
//
// The last line it prints is always
//
//	critest: N passed, N failed, N skipped
//
// The ratchet (see test/critest/README.md):
//
//   - every spec named in expected-pass.txt must be in the report and pass;
//   - every spec that does not pass (failed, timed out, panicked, interrupted,
//     skipped or pending) must be named in cannot-pass.txt, each line
//     "<spec name> | <reason>", the reason being "cannot apply: …" or
//     "not built yet: <capability> (issue N)" — "(no issue yet)" in place of
//     the issue marks a capability that still needs one;
//   - no spec is in both files, no file names a spec twice, and every spec
//     named in either file is in the report;
//   - a spec in cannot-pass.txt that passes is a hint to move it, not an error.
//
// critest itself skips its benchmark specs in a validation run (it sets
// ginkgo's skip to "benchmark"); specs removed by that filter are counted
// apart and are not part of the ratchet. Any other focus or skip filter
// recorded in the report is an error: every spec must be run or counted.
//
// The one exception is a declared focus run: with -allowed-focus RE, a report
// focused on exactly RE (ginkgo's -ginkgo.focus) is accepted; the specs the
// focus left out are counted apart, and every spec it ran must pass (a
// short second pass, such as the websocket streaming run of run.sh, is
// checked without the lists, which name the whole suite). Given lists too,
// as the node e2e suite's [NodeConformance] run (test/nodee2e) is, the
// focused specs answer to the lists instead, and -name names that suite in
// the summary line.
//
// The exit status is 0 when every check holds, 1 when one does not, 2 on a
// usage or input error.
package main

import (
	"bufio"
	"encoding/xml"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("junitcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	expectedPath := fs.String("expected-pass", "", "file of spec names that must pass")
	cannotPath := fs.String("cannot-pass", "", "file of `spec | reason` lines for specs that cannot pass yet")
	list := fs.Bool("list", false, "also print every spec with its status")
	allowedSkip := fs.String("allowed-skip", "benchmark", "the only ginkgo skip filter the report may carry (critest sets it itself)")
	allowedFocus := fs.String("allowed-focus", "", "a ginkgo focus the report may carry: the others are counted apart; the specs it ran must all pass unless lists are given")
	name := fs.String("name", "critest", "the suite's name in the summary line")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "junitcheck: no JUnit report given")
		fs.Usage()
		return 2
	}

	var suites []junitSuite
	for _, p := range fs.Args() {
		s, err := readReport(p)
		if err != nil {
			fmt.Fprintf(stderr, "junitcheck: %v\n", err)
			return 2
		}
		suites = append(suites, s...)
	}
	withLists := *expectedPath != "" || *cannotPath != ""
	res := analyze(suites, *allowedSkip, *allowedFocus, withLists)

	var lists *Lists
	if withLists {
		var err error
		lists, err = loadLists(*expectedPath, *cannotPath)
		if err != nil {
			fmt.Fprintf(stderr, "junitcheck: %v\n", err)
			return 2
		}
	}

	if *list {
		for _, sp := range res.Specs {
			fmt.Fprintf(stdout, "%s\t%s\n", sp.Status, sp.Name)
		}
	}

	problems := res.Problems
	var hints []string
	if lists != nil {
		p, h := lists.check(res)
		problems = append(problems, p...)
		hints = h
	}

	for _, h := range hints {
		fmt.Fprintf(stdout, "hint: %s\n", h)
	}
	if res.Filtered > 0 {
		fmt.Fprintf(stdout, "junitcheck: %d specs not run, removed by the run's own skip filter %q (not counted)\n", res.Filtered, *allowedSkip)
	}
	if res.Unfocused > 0 || (*allowedFocus != "" && res.Passed+res.Failed+res.Skipped > 0) {
		rule := "all must pass"
		if withLists {
			rule = "the lists say which must pass"
		}
		fmt.Fprintf(stdout, "junitcheck: focus %q: %d specs run, %s; %d not run, left out by the focus (not counted)\n",
			*allowedFocus, res.Passed+res.Failed+res.Skipped, rule, res.Unfocused)
	}
	if len(problems) > 0 {
		fmt.Fprintf(stdout, "junitcheck: %d error(s):\n", len(problems))
		for _, p := range problems {
			fmt.Fprintf(stdout, "  %s\n", p)
		}
	} else if lists != nil {
		fmt.Fprintf(stdout, "junitcheck: ratchet holds (%d specs must pass, %d listed as cannot pass yet)\n",
			len(lists.Expected), len(lists.Cannot))
	}
	if nri, other := res.split(nriPrefix); nri.total() > 0 {
		fmt.Fprintf(stdout, "junitcheck: NRI specs (critest -nri-socket): %s; the other specs: %s\n", nri, other)
	}
	fmt.Fprintf(stdout, "%s: %d passed, %d failed, %d skipped\n", *name, res.Passed, res.Failed, res.Skipped)
	if len(problems) > 0 {
		return 1
	}
	return 0
}

// JUnit, as ginkgo v2 writes it (reporters/junit_report.go).

type junitSuites struct {
	XMLName    xml.Name     `xml:"testsuites"`
	TestSuites []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Properties []junitProperty `xml:"properties>property"`
	TestCases  []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name    string        `xml:"name,attr"`
	Status  string        `xml:"status,attr"`
	Skipped *junitMessage `xml:"skipped"`
	Failure *junitMessage `xml:"failure"`
	Error   *junitMessage `xml:"error"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
}

func readReport(path string) ([]junitSuite, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var root struct{ XMLName xml.Name }
	if err := xml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	switch root.XMLName.Local {
	case "testsuites":
		var s junitSuites
		if err := xml.Unmarshal(data, &s); err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		return s.TestSuites, nil
	case "testsuite":
		var s junitSuite
		if err := xml.Unmarshal(data, &s); err != nil {
			return nil, fmt.Errorf("parse %s: %w", path, err)
		}
		return []junitSuite{s}, nil
	}
	return nil, fmt.Errorf("parse %s: root element is <%s>, want <testsuites> or <testsuite>", path, root.XMLName.Local)
}

// Status is a spec's outcome, reduced to what the ratchet needs.
type Status string

const (
	Passed  Status = "passed"
	Failed  Status = "failed"
	Skipped Status = "skipped"
)

// Spec is one spec of the report.
type Spec struct {
	Name   string // spec text, without ginkgo's "[It] " prefix
	Status Status
	Detail string // ginkgo's own state and message, for humans
}

// Result is what a report says, before the lists are applied.
type Result struct {
	Specs                   []Spec // sorted by name, one per name
	Passed, Failed, Skipped int
	Filtered                int      // removed by critest's own benchmark filter
	Unfocused               int      // left out by an allowed focus
	Problems                []string // report-level errors
}

// leafPrefix matches the "[LeafNodeType] " ginkgo puts before a spec's text:
// "It" for a spec, a suite node type for a setup node.
var leafPrefix = regexp.MustCompile(`^\[(It|BeforeSuite|SynchronizedBeforeSuite|AfterSuite|SynchronizedAfterSuite|ReportBeforeSuite|ReportAfterSuite|DeferCleanup \(Suite\))\] ?`)

// specName returns the spec text of a JUnit testcase name and whether the
// testcase is a spec ("It") rather than a suite setup node.
func specName(name string) (string, bool) {
	name = strings.TrimSpace(name)
	m := leafPrefix.FindStringSubmatch(name)
	if m == nil {
		return name, true
	}
	return strings.TrimSpace(name[len(m[0]):]), m[1] == "It"
}

// normalize turns a name from a list or a report into the key used to
// compare them: ginkgo's "[It] " prefix is optional in the lists.
func normalize(name string) string {
	n, _ := specName(name)
	return n
}

func caseStatus(tc junitCase) (Status, string) {
	state := tc.Status
	switch {
	case state == "" && tc.Failure != nil:
		state = "failed"
	case state == "" && tc.Error != nil:
		state = "panicked"
	case state == "" && tc.Skipped != nil:
		state = "skipped"
	case state == "":
		state = "passed"
	}
	msg := ""
	for _, m := range []*junitMessage{tc.Failure, tc.Error, tc.Skipped} {
		if m != nil && m.Message != "" {
			msg = m.Message
			break
		}
	}
	detail := state
	if msg != "" && msg != state {
		detail += ": " + summarize(msg)
	}
	switch state {
	case "passed":
		return Passed, detail
	case "skipped", "pending":
		return Skipped, detail
	default: // failed, timedout, panicked, interrupted, aborted
		return Failed, detail
	}
}

// summarize makes one short line of a failure message: the gRPC error when
// there is one (what crid answered), else the message's start.
func summarize(s string) string {
	if i := strings.Index(s, "rpc error: "); i >= 0 {
		s = s[i:]
		if j := strings.IndexAny(s, "\n\""); j >= 0 {
			s = s[:j]
		}
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

func worse(a, b Status) Status {
	rank := map[Status]int{Passed: 0, Skipped: 1, Failed: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

func analyze(suites []junitSuite, allowedSkip, allowedFocus string, withLists bool) Result {
	var res Result
	var filter, focus *regexp.Regexp
	byName := map[string]*Spec{}
	total := 0
	for _, s := range suites {
		props := map[string]string{}
		for _, p := range s.Properties {
			props[p.Name] = p.Value
		}
		if v := props["FocusStrings"]; v != "" && allowedFocus != "" && v == allowedFocus {
			re, err := regexp.Compile(allowedFocus)
			if err != nil {
				res.Problems = append(res.Problems, fmt.Sprintf("allowed focus %q: %v", allowedFocus, err))
			} else {
				focus = re
			}
			delete(props, "FocusStrings")
		}
		for _, key := range []string{"FocusStrings", "FocusFiles", "SkipFiles", "LabelFilter", "SemVerFilter"} {
			if v := props[key]; v != "" {
				res.Problems = append(res.Problems, fmt.Sprintf("suite %q ran with %s=%q: every spec must be run, no filter may hide specs", s.Name, key, v))
			}
		}
		if v := props["SkipStrings"]; v != "" && v != allowedSkip {
			res.Problems = append(res.Problems, fmt.Sprintf("suite %q ran with SkipStrings=%q: only critest's own %q is allowed", s.Name, v, allowedSkip))
		}
		if props["SkipStrings"] == allowedSkip && allowedSkip != "" {
			if re, err := regexp.Compile(allowedSkip); err == nil {
				filter = re
			}
		}
		if props["DryRun"] == "true" {
			res.Problems = append(res.Problems, fmt.Sprintf("suite %q is a dry run", s.Name))
		}
		if props["SuiteHasProgrammaticFocus"] == "true" {
			res.Problems = append(res.Problems, fmt.Sprintf("suite %q has a programmatic focus", s.Name))
		}

		for _, tc := range s.TestCases {
			name, isSpec := specName(tc.Name)
			st, detail := caseStatus(tc)
			if !isSpec {
				// A suite setup node (BeforeSuite, AfterSuite, ReportAfterSuite…).
				if st == Failed {
					res.Problems = append(res.Problems, fmt.Sprintf("suite setup node %q %s", strings.TrimSpace(tc.Name), detail))
				}
				continue
			}
			// Specs that critest's own benchmark filter removed: skipped
			// without a Skip() reason, their text matching the filter.
			if filter != nil && st == Skipped && tc.Skipped != nil && tc.Skipped.Message == "skipped" && filter.MatchString(name) {
				res.Filtered++
				continue
			}
			// Specs the allowed focus left out: skipped the same way,
			// their text not matching the focus.
			if focus != nil && st == Skipped && tc.Skipped != nil && tc.Skipped.Message == "skipped" && !focus.MatchString(name) {
				res.Unfocused++
				continue
			}
			total++
			if sp, ok := byName[name]; ok {
				sp.Status = worse(sp.Status, st)
				if st != Passed {
					sp.Detail = detail
				}
			} else {
				byName[name] = &Spec{Name: name, Status: st, Detail: detail}
			}
			switch st {
			case Passed:
				res.Passed++
			case Failed:
				res.Failed++
			case Skipped:
				res.Skipped++
			}
		}
	}
	if total == 0 {
		res.Problems = append(res.Problems, "the report holds no spec")
	}
	for _, sp := range byName {
		res.Specs = append(res.Specs, *sp)
	}
	sort.Slice(res.Specs, func(i, j int) bool { return res.Specs[i].Name < res.Specs[j].Name })
	if allowedFocus != "" && focus == nil {
		res.Problems = append(res.Problems, fmt.Sprintf("-allowed-focus %q given, but the report was not run with that focus", allowedFocus))
	}
	if focus != nil && !withLists {
		for _, sp := range res.Specs {
			if sp.Status != Passed {
				res.Problems = append(res.Problems, fmt.Sprintf("focused spec %q did not pass: %s", sp.Name, sp.Detail))
			}
		}
	}
	return res
}

// nriPrefix starts the names of critest's NRI specs, which run only when
// critest is given -nri-socket (skipped otherwise).
const nriPrefix = "[k8s.io] NRI "

// counts are the outcomes of a set of specs.
type counts struct{ passed, failed, skipped int }

func (c counts) total() int { return c.passed + c.failed + c.skipped }

func (c counts) String() string {
	return fmt.Sprintf("%d passed, %d failed, %d skipped", c.passed, c.failed, c.skipped)
}

// split counts the specs whose name starts with prefix apart from the
// others, so a run with -nri-socket also tells what a run without it
// would have passed.
func (r Result) split(prefix string) (in, out counts) {
	for _, sp := range r.Specs {
		c := &out
		if strings.HasPrefix(sp.Name, prefix) {
			c = &in
		}
		switch sp.Status {
		case Passed:
			c.passed++
		case Failed:
			c.failed++
		case Skipped:
			c.skipped++
		}
	}
	return in, out
}

// Lists are the two tracked files of the ratchet.
type Lists struct {
	Expected     map[string]bool   // must pass
	Cannot       map[string]string // spec → reason
	expectedFile string
	cannotFile   string
	problems     []string // malformed lines, duplicates
}

var (
	reasonCannotApply = regexp.MustCompile(`^cannot apply: \S.*$`)
	reasonNotBuilt    = regexp.MustCompile(`^not built yet: \S.* \((issue [0-9]+|no issue yet)\)$`)
)

func loadLists(expectedPath, cannotPath string) (*Lists, error) {
	l := &Lists{Expected: map[string]bool{}, Cannot: map[string]string{}, expectedFile: expectedPath, cannotFile: cannotPath}
	if expectedPath != "" {
		err := readLines(expectedPath, func(n int, line string) {
			name := normalize(line)
			if l.Expected[name] {
				l.problems = append(l.problems, fmt.Sprintf("%s:%d: %q is listed twice", expectedPath, n, name))
			}
			l.Expected[name] = true
		})
		if err != nil {
			return nil, err
		}
	}
	if cannotPath != "" {
		err := readLines(cannotPath, func(n int, line string) {
			i := strings.LastIndex(line, " | ")
			if i < 0 {
				l.problems = append(l.problems, fmt.Sprintf("%s:%d: want `<spec name> | <reason>`, got %q", cannotPath, n, line))
				return
			}
			name, reason := normalize(line[:i]), strings.TrimSpace(line[i+3:])
			if !reasonCannotApply.MatchString(reason) && !reasonNotBuilt.MatchString(reason) {
				l.problems = append(l.problems, fmt.Sprintf("%s:%d: reason %q must be \"cannot apply: …\" or \"not built yet: <capability> (issue N)\" (or \"(no issue yet)\")", cannotPath, n, reason))
			}
			if _, dup := l.Cannot[name]; dup {
				l.problems = append(l.problems, fmt.Sprintf("%s:%d: %q is listed twice", cannotPath, n, name))
			}
			l.Cannot[name] = reason
		})
		if err != nil {
			return nil, err
		}
	}
	return l, nil
}

// readLines calls fn with each line that is neither blank nor a comment.
func readLines(path string, fn func(lineNo int, line string)) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("list %s does not exist", path)
		}
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fn(n, line)
	}
	return sc.Err()
}

// check applies the ratchet to a report: it returns the errors and the hints.
func (l *Lists) check(res Result) (problems, hints []string) {
	problems = append(problems, l.problems...)
	inReport := map[string]Spec{}
	for _, sp := range res.Specs {
		inReport[sp.Name] = sp
	}
	for _, name := range sortedKeys(l.Expected) {
		if _, both := l.Cannot[name]; both {
			problems = append(problems, fmt.Sprintf("in both lists: %q", name))
		}
	}
	for _, sp := range res.Specs {
		_, expected := l.Expected[sp.Name]
		_, cannot := l.Cannot[sp.Name]
		switch {
		case sp.Status == Passed && cannot && !expected:
			hints = append(hints, fmt.Sprintf("now passes, move it from %s to %s: %q", l.cannotFile, l.expectedFile, sp.Name))
		case sp.Status == Passed:
		case expected:
			problems = append(problems, fmt.Sprintf("REGRESSION (%s) of a spec in %s: %q", sp.Detail, l.expectedFile, sp.Name))
		case !cannot:
			problems = append(problems, fmt.Sprintf("UNLISTED (%s), in neither list: %q", sp.Detail, sp.Name))
		}
	}
	for _, name := range sortedKeys(l.Expected) {
		if _, ok := inReport[name]; !ok {
			problems = append(problems, fmt.Sprintf("MISSING from the report, listed in %s: %q", l.expectedFile, name))
		}
	}
	for _, name := range sortedKeys(l.Cannot) {
		if _, ok := inReport[name]; !ok {
			problems = append(problems, fmt.Sprintf("STALE: listed in %s but not in the report: %q", l.cannotFile, name))
		}
	}
	return problems, hints
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
