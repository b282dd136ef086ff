package supervisor

import (
	"fmt"
	"os"
	"strconv"
)

const readyEnv = "BOXSWARM_READY_FD"

// NotifyReady tells the supervisor that the calling daemon is ready. Outside
// a supervisor it does nothing.
func NotifyReady() error {
	s := os.Getenv(readyEnv)
	if s == "" {
		return nil
	}
	fd, err := strconv.Atoi(s)
	if err != nil || fd < 3 {
		return fmt.Errorf("%s=%q is not a file descriptor", readyEnv, s)
	}
	f := os.NewFile(uintptr(fd), "ready")
	defer f.Close()
	if _, err := f.WriteString("READY\n"); err != nil {
		return fmt.Errorf("notify supervisor: %w", err)
	}
	return nil
}
