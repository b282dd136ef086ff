package supervisor

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The test binary doubles as the daemons under supervision.
func TestMain(m *testing.M) {
	switch os.Getenv("SUPERVISOR_TEST_DAEMON") {
	case "":
		os.Exit(m.Run())
	case "ready":
		fmt.Println("hello from", os.Getpid())
		if err := NotifyReady(); err != nil {
			fmt.Println(err)
			os.Exit(3)
		}
		time.Sleep(time.Hour)
	case "never-ready":
		time.Sleep(time.Hour)
	case "crash":
		// Count runs in a file, so the test can see restarts.
		f, _ := os.OpenFile(os.Getenv("RUNS_FILE"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		f.WriteString("x")
		f.Close()
		NotifyReady()
		os.Exit(7)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var reaper = NewReaper()

func daemon(name, mode string, env ...string) Daemon {
	return Daemon{Name: name, Path: os.Args[0], Env: append(env, "SUPERVISOR_TEST_DAEMON="+mode)}
}

func run(t *testing.T, cfg Config) (Health, *syncBuffer, context.CancelFunc) {
	t.Helper()
	out := &syncBuffer{}
	s, err := New(cfg, reaper, out, slog.New(slog.NewTextHandler(out, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	health := make(chan Health, 1)
	done := make(chan struct{})
	go func() { s.Run(ctx, health); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case h := <-health:
		return h, out, cancel
	case <-time.After(30 * time.Second):
		t.Fatal("no health verdict")
	}
	return Health{}, nil, nil
}

func TestHealthy(t *testing.T) {
	h, out, _ := run(t, Config{
		Daemons:       []Daemon{daemon("one", "ready"), daemon("two", "ready")},
		HealthTimeout: Duration(20 * time.Second), Settle: Duration(300 * time.Millisecond),
	})
	if !h.OK {
		t.Fatalf("health = %+v, want OK\n%s", h, out)
	}
	for _, want := range []string{"one: hello from", "two: hello from"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestNeverReady(t *testing.T) {
	start := time.Now()
	h, out, _ := run(t, Config{
		Daemons:       []Daemon{daemon("good", "ready"), daemon("stuck", "never-ready")},
		HealthTimeout: Duration(time.Second), Settle: Duration(100 * time.Millisecond),
	})
	if h.OK || h.Err == nil || !strings.Contains(h.Err.Error(), "stuck") || strings.Contains(h.Err.Error(), "good") {
		t.Fatalf("health = %+v, want not OK naming only stuck\n%s", h, out)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("verdict after %v, before the health timeout", d)
	}
}

// TestCrashLoop checks that a daemon that dies right after saying ready is
// restarted with growing delays and never makes the boot healthy.
func TestCrashLoop(t *testing.T) {
	runs := filepath.Join(t.TempDir(), "runs")
	h, out, cancel := run(t, Config{
		Daemons:       []Daemon{daemon("crashy", "crash", "RUNS_FILE="+runs)},
		HealthTimeout: Duration(2 * time.Second), Settle: Duration(500 * time.Millisecond),
		MinBackoff: Duration(100 * time.Millisecond), MaxBackoff: Duration(400 * time.Millisecond),
	})
	cancel()
	if h.OK {
		t.Fatalf("a crashing daemon made the boot healthy\n%s", out)
	}
	b, _ := os.ReadFile(runs)
	// 2 s with delays 100, 200, 400, 400... ms allows about 6 runs.
	if n := len(b); n < 3 || n > 9 {
		t.Errorf("daemon ran %d times in 2 s, want restarts with backoff\n%s", n, out)
	}
}

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, json string
		ok         bool
	}{
		{"good", `{"daemons":[{"name":"a","path":"/bin/a"}],"health_timeout":"30s"}`, true},
		{"unknown field", `{"daemons":[{"name":"a","path":"/bin/a"}],"colour":"red"}`, false},
		{"no daemons", `{"daemons":[]}`, false},
		{"duplicate", `{"daemons":[{"name":"a","path":"/bin/a"},{"name":"a","path":"/bin/b"}]}`, false},
		{"bad duration", `{"daemons":[{"name":"a","path":"/bin/a"}],"settle":"soon"}`, false},
		{"backoff inverted", `{"daemons":[{"name":"a","path":"/bin/a"}],"min_backoff":"2m","max_backoff":"1m"}`, false},
	} {
		p := filepath.Join(dir, tc.name+".json")
		os.WriteFile(p, []byte(tc.json), 0o600)
		c, err := LoadConfig(p)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v", tc.name, err)
		}
		if tc.ok && (time.Duration(c.HealthTimeout) != 30*time.Second || time.Duration(c.Settle) != 2*time.Second) {
			t.Errorf("%s: defaults not applied: %+v", tc.name, c)
		}
	}
}
