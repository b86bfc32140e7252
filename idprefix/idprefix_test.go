package idprefix

import "testing"

func TestFind(t *testing.T) {
	m := map[string]int{"abc123": 1, "abd456": 2, "ab": 3}
	for _, tc := range []struct {
		id      string
		want, n int
	}{
		{"abc123", 1, 1}, {"abc", 1, 1}, {"ab", 3, 1}, // an exact key wins over prefixes
		{"a", 0, 3}, {"ff", 0, 0}, {"", 0, 0}, {"ABC", 0, 0}, {"ab c", 0, 0},
	} {
		got, n := Find(m, tc.id)
		if got != tc.want || n != tc.n {
			t.Errorf("Find(%q) = %d, %d; want %d, %d", tc.id, got, n, tc.want, tc.n)
		}
	}
}
