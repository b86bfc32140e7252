package podsandbox

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// The crash and timeout tests stop the daemon at a named step:
// CRID_TEST_BLOCK_AT=<step> makes crid write <step> into the file named by
// CRID_TEST_BLOCK_FILE and wait there to be killed; <step>@<duration> only
// delays the step. Unset, testHook costs one string comparison.
var blockAt, blockFile = os.Getenv("CRID_TEST_BLOCK_AT"), os.Getenv("CRID_TEST_BLOCK_FILE")

func testHook(step string) {
	if blockAt == "" {
		return
	}
	at, delay, _ := strings.Cut(blockAt, "@")
	if at != step {
		return
	}
	if d, err := time.ParseDuration(delay); err == nil {
		time.Sleep(d)
		return
	}
	_ = os.WriteFile(filepath.Clean(blockFile), []byte(step), 0o600)
	select {} // until the test kills the process
}

func devOf(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Dev
	}
	return 0
}
