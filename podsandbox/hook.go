package podsandbox

import (
	"os"
	"path/filepath"
	"syscall"
)

// blockAt is the step at which testHook stops the daemon, for the crash
// tests: CRID_TEST_BLOCK_AT=<step> makes crid write <step> into the file
// named by CRID_TEST_BLOCK_FILE and wait to be killed there.
var blockAt, blockFile = os.Getenv("CRID_TEST_BLOCK_AT"), os.Getenv("CRID_TEST_BLOCK_FILE")

func testHook(step string) {
	if blockAt == "" || step != blockAt {
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
