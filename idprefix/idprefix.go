// Package idprefix resolves the short IDs crictl prints (and people type):
// every RPC accepts a unique prefix of a 64-hex ID, as containerd and CRI-O
// do.
package idprefix

import (
	"fmt"
	"strings"
)

// IDLen is the length of a full ID (64 hex digits): an ID that long
// cannot be the prefix of another.
const IDLen = 64

// Find returns the item whose key is id, or else the one whose key starts
// with id, and how many keys matched: 0 (not found), 1, or more (ambiguous,
// with no item). Only lowercase hex shorter than a full ID counts as a
// prefix: kubelet asks for the status of removed objects by their full ID,
// and each miss scanned every key (20,000 on a node that keeps its exited
// containers).
func Find[T any](items map[string]T, id string) (T, int) {
	if it, ok := items[id]; ok {
		return it, 1
	}
	var (
		found T
		n     int
	)
	if id == "" || len(id) >= IDLen || strings.Trim(id, "0123456789abcdef") != "" {
		return found, 0
	}
	for key, it := range items {
		if strings.HasPrefix(key, id) {
			found = it
			n++
		}
	}
	if n > 1 {
		var zero T
		return zero, n
	}
	return found, n
}

// Resolve is Find with the caller's errors: notFound when nothing matches,
// ambiguous when several items share the prefix. kind names the items in
// the message ("container", "pod sandbox").
func Resolve[T any](items map[string]T, id, kind string, notFound, ambiguous error) (T, error) {
	it, n := Find(items, id)
	switch n {
	case 0:
		return it, fmt.Errorf("%w: %s %q", notFound, kind, id)
	case 1:
		return it, nil
	default:
		return it, fmt.Errorf("%w: %q names %d %ss", ambiguous, id, n, kind)
	}
}
