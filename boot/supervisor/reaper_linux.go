package supervisor

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
)

// Reaper collects the exit status of every child process. Process 1 must
// also reap orphans it never started, so a single loop waits for any child
// and hands each status to whoever started that process; nobody else may
// call wait.
type Reaper struct {
	mu      sync.Mutex
	waiting map[int]chan error
}

// NewReaper starts reaping. There must be only one per process.
func NewReaper() *Reaper {
	r := &Reaper{waiting: map[int]chan error{}}
	sig := make(chan os.Signal, 16)
	signal.Notify(sig, syscall.SIGCHLD)
	go func() {
		for range sig {
			r.reap()
		}
	}()
	return r
}

// Start starts cmd and returns a channel that receives its exit status (nil
// for a clean exit). Never call cmd.Wait on a command started here.
func (r *Reaper) Start(cmd *exec.Cmd) (<-chan error, error) {
	// Held across Start so the reaper cannot collect the child before it
	// is registered.
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := make(chan error, 1)
	r.waiting[cmd.Process.Pid] = ch
	return ch, nil
}

func (r *Reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		ch, ok := r.waiting[pid]
		if !ok {
			continue // an orphan
		}
		delete(r.waiting, pid)
		ch <- exitError(ws)
	}
}

func exitError(ws syscall.WaitStatus) error {
	switch {
	case ws.Exited() && ws.ExitStatus() == 0:
		return nil
	case ws.Exited():
		return fmt.Errorf("exit status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Errorf("killed by %v", ws.Signal())
	default:
		return fmt.Errorf("wait status %#x", uint32(ws))
	}
}
