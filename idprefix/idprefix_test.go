package idprefix

import (
	"errors"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	m := map[string]int{"abc123": 1, "abd456": 2, "ab": 3, strings.Repeat("a", IDLen) + "b": 4}
	for _, tc := range []struct {
		id      string
		want, n int
	}{
		{"abc123", 1, 1}, {"abc", 1, 1}, {"ab", 3, 1}, // an exact key wins over prefixes
		{"a", 0, 4}, {"ff", 0, 0}, {"", 0, 0}, {"ABC", 0, 0}, {"ab c", 0, 0},
		{strings.Repeat("a", IDLen), 0, 0}, // a full ID is never a prefix
	} {
		got, n := Find(m, tc.id)
		if got != tc.want || n != tc.n {
			t.Errorf("Find(%q) = %d, %d; want %d, %d", tc.id, got, n, tc.want, tc.n)
		}
	}
}

func TestResolve(t *testing.T) {
	notFound, ambiguous := errors.New("not found"), errors.New("ambiguous")
	m := map[string]int{"abc123": 1, "abd456": 2}
	if v, err := Resolve(m, "abc", "thing", notFound, ambiguous); err != nil || v != 1 {
		t.Fatalf("unique prefix: %d, %v", v, err)
	}
	if _, err := Resolve(m, "ff", "thing", notFound, ambiguous); !errors.Is(err, notFound) {
		t.Fatalf("no match: %v", err)
	}
	if _, err := Resolve(m, "ab", "thing", notFound, ambiguous); !errors.Is(err, ambiguous) || !strings.Contains(err.Error(), "2 things") {
		t.Fatalf("two matches: %v", err)
	}
}
