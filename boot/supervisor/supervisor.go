// Package supervisor runs the second stage's daemons: it starts each one,
// restarts it with exponential backoff when it exits, and reports the boot
// healthy once every daemon has said it is ready and stayed up for a settle
// period. A healthy report is what marks a trial image good; a boot that is
// not healthy before its deadline is reported unhealthy, so the box can
// return to the image it trusted before.
//
// Daemons signal readiness by writing a line to the file descriptor named
// in the environment variable BOXSWARM_READY_FD (see NotifyReady).
package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Daemon is one program the supervisor keeps running.
type Daemon struct {
	Name string   `json:"name"`
	Path string   `json:"path"`
	Args []string `json:"args,omitempty"`
	Env  []string `json:"env,omitempty"`
}

// Config is the supervisor's configuration file, written by the image baker
// from the image recipe.
type Config struct {
	Daemons []Daemon `json:"daemons"`
	// HealthTimeout is how long the boot may take to become healthy.
	HealthTimeout Duration `json:"health_timeout"`
	// Settle is how long every daemon must stay up after saying it is ready.
	Settle Duration `json:"settle"`
	// MinBackoff and MaxBackoff bound the delay before a restart; the delay
	// doubles after each quick exit and resets after a long run.
	MinBackoff Duration `json:"min_backoff"`
	MaxBackoff Duration `json:"max_backoff"`
}

// Duration is a time.Duration written as "1m30s" in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// LoadConfig reads and checks a configuration file, filling in defaults.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.check(); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func (c *Config) check() error {
	if len(c.Daemons) == 0 {
		return errors.New("no daemons listed")
	}
	seen := map[string]bool{}
	for i, d := range c.Daemons {
		if d.Name == "" || d.Path == "" {
			return fmt.Errorf("daemon %d: name and path are required", i)
		}
		if seen[d.Name] {
			return fmt.Errorf("daemon %q listed twice", d.Name)
		}
		seen[d.Name] = true
	}
	defaults := []struct {
		d   *Duration
		def time.Duration
	}{
		{&c.HealthTimeout, 60 * time.Second}, {&c.Settle, 2 * time.Second},
		{&c.MinBackoff, time.Second}, {&c.MaxBackoff, time.Minute},
	}
	for _, x := range defaults {
		if *x.d <= 0 {
			*x.d = Duration(x.def)
		}
	}
	if c.MaxBackoff < c.MinBackoff {
		return fmt.Errorf("max_backoff %v is below min_backoff %v", time.Duration(c.MaxBackoff), time.Duration(c.MinBackoff))
	}
	return nil
}

// Health is the verdict on the boot, reported once.
type Health struct {
	OK  bool
	Err error // why the boot is not healthy
}

// Supervisor runs the daemons of one Config.
type Supervisor struct {
	cfg    Config
	log    *slog.Logger
	output io.Writer // where daemon output goes, one prefixed line at a time
	outMu  sync.Mutex
	reaper *Reaper
}

// New returns a supervisor. Daemon output is copied to output with each
// line prefixed by the daemon's name.
func New(cfg Config, reaper *Reaper, output io.Writer, log *slog.Logger) (*Supervisor, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	return &Supervisor{cfg: cfg, log: log, output: output, reaper: reaper}, nil
}

type event struct {
	name  string
	ready bool // false: the daemon exited
	err   error
}

// Run keeps the daemons running until ctx ends. It sends exactly one Health
// verdict on health: OK once all daemons are ready and have stayed up for
// the settle period, or not OK when the health timeout passes first.
func (s *Supervisor) Run(ctx context.Context, health chan<- Health) error {
	events := make(chan event)
	var wg sync.WaitGroup
	for _, d := range s.cfg.Daemons {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.keep(ctx, d, events)
		}()
	}
	go func() { wg.Wait(); close(events) }()

	ready := map[string]bool{}
	deadline := time.NewTimer(time.Duration(s.cfg.HealthTimeout))
	defer deadline.Stop()
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	reported := false
	report := func(h Health) {
		if !reported {
			reported = true
			health <- h
		}
	}
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return ctx.Err()
			}
			if ev.ready {
				ready[ev.name] = true
				s.log.Info("daemon ready", "daemon", ev.name)
				if len(ready) == len(s.cfg.Daemons) && !reported {
					settle.Reset(time.Duration(s.cfg.Settle))
				}
				continue
			}
			delete(ready, ev.name)
			settle.Stop()
			s.log.Warn("daemon exited", "daemon", ev.name, "err", ev.err)
		case <-settle.C:
			if len(ready) == len(s.cfg.Daemons) {
				report(Health{OK: true})
			}
		case <-deadline.C:
			if !reported {
				var missing []string
				for _, d := range s.cfg.Daemons {
					if !ready[d.Name] {
						missing = append(missing, d.Name)
					}
				}
				report(Health{Err: fmt.Errorf("not healthy after %v: not ready: %v", time.Duration(s.cfg.HealthTimeout), missing)})
			}
		}
	}
}

// keep runs one daemon until ctx ends, restarting it after each exit.
func (s *Supervisor) keep(ctx context.Context, d Daemon, events chan<- event) {
	backoff := time.Duration(s.cfg.MinBackoff)
	for ctx.Err() == nil {
		started := time.Now()
		err := s.runOnce(ctx, d, events)
		if ctx.Err() != nil {
			return
		}
		select {
		case events <- event{name: d.Name, err: err}:
		case <-ctx.Done():
			return
		}
		if time.Since(started) > 10*time.Duration(s.cfg.MaxBackoff) {
			backoff = time.Duration(s.cfg.MinBackoff)
		}
		s.log.Info("restarting daemon", "daemon", d.Name, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, time.Duration(s.cfg.MaxBackoff))
	}
}

// runOnce starts the daemon and waits for it to exit, forwarding its
// readiness line.
func (s *Supervisor) runOnce(ctx context.Context, d Daemon, events chan<- event) error {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer readyR.Close()
	out, err := newLineWriter(s.output, &s.outMu, d.Name+": ")
	if err != nil {
		readyW.Close()
		return err
	}
	defer out.Close()
	cmd := exec.Command(d.Path, d.Args...)
	cmd.Env = append(append(os.Environ(), d.Env...), readyEnv+"=3")
	cmd.ExtraFiles = []*os.File{readyW}
	cmd.Stdout, cmd.Stderr = out.pipeW, out.pipeW
	exited, err := s.reaper.Start(cmd)
	readyW.Close()
	out.pipeW.Close()
	if err != nil {
		return fmt.Errorf("start %s: %w", d.Path, err)
	}
	s.log.Info("daemon started", "daemon", d.Name, "pid", cmd.Process.Pid)
	readyLine := make(chan struct{}, 1)
	go func() {
		line := make([]byte, 64)
		if n, _ := readyR.Read(line); n > 0 {
			readyLine <- struct{}{}
		}
	}()
	for {
		select {
		case <-readyLine:
			// Sent from this goroutine, so a ready event can never follow
			// the exit event of the same run.
			select {
			case events <- event{name: d.Name, ready: true}:
			case <-ctx.Done():
			}
		case status := <-exited:
			return status
		case <-ctx.Done():
			_ = cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
			return ctx.Err()
		}
	}
}
