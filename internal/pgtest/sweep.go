package pgtest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ownerFile, in a cluster's folder, names the test process that made it:
// its pid and start time, since pids are reused.
const ownerFile = "owner"

func ownerLine(pid int) string { return fmt.Sprintf("%d %d\n", pid, startTime(pid)) }

// startTime is when a process started, in clock ticks since boot (field
// 22 of /proc/pid/stat), or -1 if there is no such process.
func startTime(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return -1
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return -1
	}
	t, err := strconv.ParseInt(f[19], 10, 64)
	if err != nil {
		return -1
	}
	return t
}

// running reports whether a process exists and has not ended: in a
// container whose init does not reap, an ended process lingers as a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// ownerAlive reports whether the process an owner line names still runs.
func ownerAlive(line string) (alive, ok bool) {
	var pid int
	var start int64
	if _, err := fmt.Sscanf(line, "%d %d", &pid, &start); err != nil {
		return false, false
	}
	return startTime(pid) == start, true
}

// sweep removes the folders of clusters whose test process is gone and
// whose server has stopped: what a test binary that died leaves behind.
// Folders it cannot judge are left alone.
func sweep(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, dirPattern))
	for _, dir := range dirs {
		line, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or being set up
		}
		if alive, ok := ownerAlive(string(line)); !ok || alive {
			continue
		}
		if pid := postmasterPID(dir); pid > 0 && running(pid) {
			continue // still shutting down; the next sweep takes it
		}
		_ = os.RemoveAll(dir)
	}
}

// postmasterPID reads the server's pid from its lock file, 0 if none.
func postmasterPID(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(first))
	return pid
}
