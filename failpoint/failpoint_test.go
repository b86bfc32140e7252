package failpoint

import "testing"

func TestParse(t *testing.T) {
	m, err := Parse("a=panic, b=sleep:20ms,c=error,d=kill")
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 4 || m["a"].kind != "panic" || m["b"].sleep.Milliseconds() != 20 || m["c"].kind != "error" || m["d"].kind != "kill" {
		t.Fatalf("parsed %+v", m)
	}
	for _, bad := range []string{"a", "=panic", "a=explode", "a=sleep:x", "a=sleep:-1s"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}
