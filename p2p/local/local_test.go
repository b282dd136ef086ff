package local

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

// fake is a Backend that records what it is asked and answers from its
// fields.
type fake struct {
	mu       sync.Mutex
	calls    []string
	status   Status
	codes    map[string]error // Activate's answer per code
	catalog  []api.CatalogItem
	list     api.PriorityList
	progress map[media.ID]Progress
	err      error // returned by every call but Status when set
	pass     func(context.Context, api.PassRequest) (api.PassResponse, error)
	key      func(context.Context, []byte) (api.KeyResponse, error)
	change   uint64
	changed  chan struct{}
}

func newFake() *fake {
	return &fake{change: 100, changed: make(chan struct{}), codes: map[string]error{}}
}

func (f *fake) record(call string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	return f.err
}

func (f *fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fake) bump() {
	f.mu.Lock()
	f.change++
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

func (f *fake) Status(context.Context) (Status, error) {
	f.record("Status")
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status, nil
}

func (f *fake) Activate(_ context.Context, code string) error {
	if err := f.record("Activate " + code); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.codes[code]
}

func (f *fake) Catalog(context.Context) ([]api.CatalogItem, error) {
	if err := f.record("Catalog"); err != nil {
		return nil, err
	}
	return f.catalog, nil
}

func (f *fake) List(context.Context) (api.PriorityList, error) {
	if err := f.record("List"); err != nil {
		return api.PriorityList{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.list, nil
}

func (f *fake) SetList(_ context.Context, titles []media.ID) (api.PriorityList, error) {
	if err := f.record(fmt.Sprintf("SetList %d", len(titles))); err != nil {
		return api.PriorityList{}, err
	}
	if checkTitles(titles) != nil {
		panic("SetList called with titles that fail the checks")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.list = api.PriorityList{Titles: titles, Version: f.list.Version + 1}
	return f.list, nil
}

func (f *fake) Progress(_ context.Context, titles []media.ID) (map[media.ID]Progress, error) {
	if err := f.record(fmt.Sprintf("Progress %d", len(titles))); err != nil {
		return nil, err
	}
	if checkTitles(titles) != nil {
		panic("Progress called with titles that fail the checks")
	}
	return f.progress, nil
}

func (f *fake) Pass(ctx context.Context, req api.PassRequest) (api.PassResponse, error) {
	if err := f.record("Pass"); err != nil {
		return api.PassResponse{}, err
	}
	if req.Validate() != nil || req.Title == (media.ID{}) {
		panic("Pass called with a request that fails the checks")
	}
	if f.pass == nil {
		return api.PassResponse{Title: req.Title, Price: "1.99 EUR", Reason: "confirm"}, nil
	}
	return f.pass(ctx, req)
}

func (f *fake) Key(ctx context.Context, pass []byte) (api.KeyResponse, error) {
	if err := f.record("Key"); err != nil {
		return api.KeyResponse{}, err
	}
	if (api.KeyRequest{Pass: pass}).Validate() != nil {
		panic("Key called with a pass that fails the checks")
	}
	if f.key == nil {
		return api.KeyResponse{Title: media.ID{9}, WrappedKey: []byte("wrapped")}, nil
	}
	return f.key(ctx, pass)
}

func (f *fake) Changes(ctx context.Context, since uint64) (uint64, error) {
	if err := f.record("Changes"); err != nil {
		return 0, err
	}
	for {
		f.mu.Lock()
		n, ch := f.change, f.changed
		f.mu.Unlock()
		if n != since {
			return n, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// serve runs a Server over b on a socket in a fresh folder and returns a
// client for it.
func serve(t *testing.T, b Backend, o ServerOptions) (*Client, string) {
	t.Helper()
	path := filepath.Join(shortDir(t), "run", "transferd.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewServer(b, o).Serve(ctx, l) }()
	c := Dial(path)
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return c, path
}

// shortDir is a temporary folder with a path short enough for sockets.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "local")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func TestClientServer(t *testing.T) {
	ctx := t.Context()
	f := newFake()
	f.status = Status{Box: api.BoxID{1, 2}, Activated: true, Connected: true, StoreSocket: "/run/boxswarm/store.sock"}
	f.codes["BAD-CODE"] = fmt.Errorf("activation code unknown: %w", ErrRefused)
	f.catalog = []api.CatalogItem{{Title: media.ID{1}, Name: "A Film", Year: 2024, PublishAt: time.Unix(1700000000, 0).UTC()}, {Title: media.ID{2}, Name: "B Film"}}
	f.progress = map[media.ID]Progress{{1}: {Complete: true, Have: 10, Pieces: 10}, {2}: {Have: 3, Pieces: 10}}
	c, _ := serve(t, f, ServerOptions{})

	if s := c.StoreSocket(); s != "" {
		t.Errorf("store socket before Status: %q", s)
	}
	st, err := c.Status(ctx)
	if err != nil || st != f.status {
		t.Fatalf("Status: %+v, %v", st, err)
	}
	if s := c.StoreSocket(); s != f.status.StoreSocket {
		t.Errorf("store socket after Status: %q", s)
	}

	if err := c.Activate(ctx, "GOOD-CODE"); err != nil {
		t.Errorf("Activate with a good code: %v", err)
	}
	err = c.Activate(ctx, "BAD-CODE")
	var e *Error
	if !errors.Is(err, ErrRefused) || errors.Is(err, ErrBadRequest) || !errors.As(err, &e) || e.Status != http.StatusForbidden ||
		!strings.Contains(err.Error(), "activation code unknown") {
		t.Errorf("Activate with a refused code: %v", err)
	}

	items, err := c.Catalog(ctx)
	if err != nil || len(items) != 2 || items[0].Name != "A Film" || !items[0].PublishAt.Equal(f.catalog[0].PublishAt) || items[1].Title != (media.ID{2}) {
		t.Errorf("Catalog: %+v, %v", items, err)
	}

	pl, err := c.List(ctx)
	if err != nil || pl.Version != 0 || len(pl.Titles) != 0 {
		t.Errorf("List before any: %+v, %v", pl, err)
	}
	pl, err = c.SetList(ctx, []media.ID{{2}, {1}})
	if err != nil || pl.Version != 1 || !slices.Equal(pl.Titles, []media.ID{{2}, {1}}) {
		t.Errorf("SetList: %+v, %v", pl, err)
	}
	pl, err = c.SetList(ctx, nil)
	if err != nil || pl.Version != 2 || len(pl.Titles) != 0 {
		t.Errorf("SetList of nothing: %+v, %v", pl, err)
	}
	if got, err := c.List(ctx); err != nil || got.Version != 2 {
		t.Errorf("List: %+v, %v", got, err)
	}

	ps, err := c.Progress(ctx, []media.ID{{1}, {2}, {3}})
	want := map[media.ID]Progress{{1}: {Complete: true, Have: 10, Pieces: 10}, {2}: {Have: 3, Pieces: 10}, {3}: {}}
	if err != nil || len(ps) != 3 || ps[media.ID{1}] != want[media.ID{1}] || ps[media.ID{2}] != want[media.ID{2}] || ps[media.ID{3}] != (Progress{}) {
		t.Errorf("Progress: %v, %v", ps, err)
	}

	pr, err := c.Pass(ctx, api.PassRequest{Title: media.ID{1}})
	if err != nil || pr.Title != (media.ID{1}) || pr.Price != "1.99 EUR" {
		t.Errorf("Pass: %+v, %v", pr, err)
	}
	kr, err := c.Key(ctx, []byte("pass bytes"))
	if err != nil || string(kr.WrappedKey) != "wrapped" {
		t.Errorf("Key: %+v, %v", kr, err)
	}

	n, err := c.Changes(ctx, 0)
	if err != nil || n != 100 {
		t.Errorf("Changes(0): %d, %v", n, err)
	}
	woke := make(chan uint64, 1)
	go func() {
		n, _ := c.Changes(ctx, 100)
		woke <- n
	}()
	select {
	case n := <-woke:
		t.Fatalf("Changes returned %d before any change", n)
	case <-time.After(100 * time.Millisecond):
	}
	f.bump()
	select {
	case n := <-woke:
		if n != 101 {
			t.Errorf("Changes after a change: %d", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Changes did not wake up")
	}
}

func TestBackendErrors(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		is     error
	}{
		{fmt.Errorf("no certificate: %w", ErrNotActivated), http.StatusConflict, ErrNotActivated},
		{fmt.Errorf("session down: %w", ErrNotConnected), http.StatusServiceUnavailable, ErrNotConnected},
		{fmt.Errorf("box 0102: %w", ErrActivated), http.StatusConflict, ErrActivated},
		{fmt.Errorf("pass for box 03: %w", ErrBadRequest), http.StatusBadRequest, ErrBadRequest},
		{errors.New("disk on fire"), http.StatusInternalServerError, ErrInternal},
	} {
		t.Run(tc.is.Error(), func(t *testing.T) {
			f := newFake()
			f.err = tc.err
			c, _ := serve(t, f, ServerOptions{})
			for name, call := range map[string]func() error{
				"SetList": func() error { _, err := c.SetList(t.Context(), []media.ID{{1}}); return err },
				"Catalog": func() error { _, err := c.Catalog(t.Context()); return err },
				"Key":     func() error { _, err := c.Key(t.Context(), []byte{1}); return err },
			} {
				err := call()
				var e *Error
				if !errors.As(err, &e) || e.Status != tc.status || !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.err.Error()) {
					t.Errorf("%s: %v (%+v), want status %d matching %v", name, err, e, tc.status, tc.is)
				}
				for _, other := range []error{ErrRefused, ErrTimeout, ErrTooLarge} {
					if errors.Is(err, other) {
						t.Errorf("%s: %v matches %v", name, err, other)
					}
				}
			}
		})
	}
}

// raw sends one request to a Server and returns the answer's status and
// error code.
func raw(t *testing.T, s *Server, method, target string, body []byte) (int, string) {
	t.Helper()
	r := httptest.NewRequest(method, target, bytes.NewReader(body))
	w := httptest.NewRecorder()
	s.ServeHTTP(w, r)
	return w.Code, errorCode(t, w.Body.Bytes(), w.Code)
}

func errorCode(t *testing.T, b []byte, status int) string {
	t.Helper()
	if status < 300 {
		return ""
	}
	var e errorResponse
	if err := decodeBody(b, &e); err != nil || e.Code == "" || e.Error == "" {
		t.Fatalf("error answer %q is not an error body: %v", b, err)
	}
	return e.Code
}

func ids(n int, same bool) string {
	var parts []string
	for i := range n {
		id := media.ID{byte(i >> 8), byte(i), 1}
		if same {
			id = media.ID{7}
		}
		parts = append(parts, strings.ReplaceAll(fmt.Sprint(id[:]), " ", ","))
	}
	return `{"titles":[` + strings.Join(parts, ",") + `]}`
}

func TestBadRequests(t *testing.T) {
	long := strings.Repeat("x", api.MaxActivateCode+1)
	bigPass := `{"pass":"` + strings.Repeat("A", (8<<10+3)/3*4+4) + `"}`
	for _, tc := range []struct {
		name, method, target, body string
		status                     int
		code                       string
	}{
		{"unknown path", "GET", "/v1/nothing", "", 404, "not_found"},
		{"root", "GET", "/", "", 404, "not_found"},
		{"wrong method", "DELETE", "/v1/list", "", 405, "method"},
		{"get activate", "GET", "/v1/activate", "", 405, "method"},
		{"empty body", "POST", "/v1/activate", "", 400, "bad_request"},
		{"not JSON", "POST", "/v1/activate", "code=1234", 400, "bad_request"},
		{"unknown field", "POST", "/v1/activate", `{"code":"1234","admin":true}`, 400, "bad_request"},
		{"trailing data", "POST", "/v1/activate", `{"code":"1234"} {}`, 400, "bad_request"},
		{"wrong type", "POST", "/v1/activate", `{"code":1234}`, 400, "bad_request"},
		{"array body", "POST", "/v1/activate", `["1234"]`, 400, "bad_request"},
		{"empty code", "POST", "/v1/activate", `{"code":""}`, 400, "bad_request"},
		{"long code", "POST", "/v1/activate", `{"code":"` + long + `"}`, 400, "bad_request"},
		{"control characters", "POST", "/v1/activate", `{"code":"12\n34"}`, 400, "bad_request"},
		{"invalid UTF-8", "POST", "/v1/activate", "{\"code\":\"12\xff34\"}", 400, "bad_request"},
		{"title twice", "PUT", "/v1/list", ids(2, true), 400, "bad_request"},
		{"zero title", "PUT", "/v1/list", `{"titles":[[0]]}`, 400, "bad_request"},
		{"byte out of range", "PUT", "/v1/list", `{"titles":[[256]]}`, 400, "bad_request"},
		{"too many titles", "PUT", "/v1/list", ids(api.MaxTitles+1, false), 400, "bad_request"},
		{"list of a string", "PUT", "/v1/list", `{"titles":"all"}`, 400, "bad_request"},
		{"progress title twice", "POST", "/v1/progress", ids(2, true), 400, "bad_request"},
		{"pass without title", "POST", "/v1/pass", `{"confirm":true}`, 400, "bad_request"},
		{"pass price too long", "POST", "/v1/pass", `{"title":[1],"confirm":true,"price":"` + long + `"}`, 400, "bad_request"},
		{"key without pass", "POST", "/v1/key", `{}`, 400, "bad_request"},
		{"key pass not base64", "POST", "/v1/key", `{"pass":"!!"}`, 400, "bad_request"},
		{"key pass too large", "POST", "/v1/key", bigPass, 400, "bad_request"},
		{"changes without since", "GET", "/v1/changes", "", 400, "bad_request"},
		{"changes since negative", "GET", "/v1/changes?since=-1", "", 400, "bad_request"},
		{"changes since twice", "GET", "/v1/changes?since=1&since=2", "", 400, "bad_request"},
		{"changes extra parameter", "GET", "/v1/changes?since=1&wait=9", "", 400, "bad_request"},
		{"changes since overflow", "GET", "/v1/changes?since=18446744073709551616", "", 400, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			s := NewServer(f, ServerOptions{})
			status, code := raw(t, s, tc.method, tc.target, []byte(tc.body))
			if status != tc.status || code != tc.code {
				t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.target, status, code, tc.status, tc.code)
			}
			if calls := f.Calls(); len(calls) > 0 {
				t.Errorf("the backend was called: %v", calls)
			}
		})
	}
}

func TestOversizedBodies(t *testing.T) {
	f := newFake()
	c, path := serve(t, f, ServerOptions{})
	// Just over: valid JSON, padded with spaces.
	body := append([]byte(`{"code":"1234"}`), bytes.Repeat([]byte(" "), MaxBody)...)
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/activate HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body))
	go conn.Write(body)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || errorCode(t, b, resp.StatusCode) != "too_large" {
		t.Errorf("oversized body: %d %s", resp.StatusCode, b)
	}
	// Chunked, with no length to refuse up front.
	req, _ := http.NewRequest("PUT", "http://x/v1/list", io.MultiReader(strings.NewReader(`{"titles":[`), strings.NewReader(strings.Repeat("[1],", MaxBody/4+1)), strings.NewReader("[2]]}")))
	resp, err = c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized chunked body: %d %s", resp.StatusCode, b)
	}
	// Headers over the limit.
	req, _ = http.NewRequest("GET", "http://x/v1/status", nil)
	req.Header.Set("X-Padding", strings.Repeat("p", 64<<10))
	if resp, err = c.hc.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized headers: %d", resp.StatusCode)
	}
	for _, call := range f.Calls() {
		if call != "Status" {
			t.Errorf("the backend was called: %v", f.Calls())
		}
	}
}

func TestTimeouts(t *testing.T) {
	f := newFake()
	released := make(chan struct{})
	f.pass = func(ctx context.Context, req api.PassRequest) (api.PassResponse, error) {
		<-ctx.Done()
		close(released)
		return api.PassResponse{}, fmt.Errorf("waiting for the head-end: %w", ctx.Err())
	}
	c, path := serve(t, f, ServerOptions{AnswerTimeout: 100 * time.Millisecond, PollWait: 50 * time.Millisecond, ReadTimeout: 200 * time.Millisecond})

	t.Run("answer", func(t *testing.T) {
		start := time.Now()
		_, err := c.Pass(t.Context(), api.PassRequest{Title: media.ID{1}})
		var e *Error
		if !errors.Is(err, ErrTimeout) || !errors.As(err, &e) || e.Status != http.StatusGatewayTimeout {
			t.Errorf("Pass with no answer: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v", d)
		}
		<-released
	})
	t.Run("caller gives up", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Millisecond)
		defer cancel()
		if _, err := c.Pass(ctx, api.PassRequest{Title: media.ID{1}}); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Pass past the caller's deadline: %v", err)
		}
	})
	t.Run("long poll", func(t *testing.T) {
		// Several polls of 50 ms each answer "unchanged"; the client asks
		// again until its own deadline.
		before := len(f.Calls())
		ctx, cancel := context.WithTimeout(t.Context(), 400*time.Millisecond)
		defer cancel()
		f.mu.Lock()
		cur := f.change
		f.mu.Unlock()
		if n, err := c.Changes(ctx, cur); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Changes with no change: %d, %v", n, err)
		}
		polls := 0
		for _, call := range f.Calls()[before:] {
			if call == "Changes" {
				polls++
			}
		}
		if polls < 3 {
			t.Errorf("%d polls in 400 ms of 50 ms each", polls)
		}
	})
	t.Run("slow body", func(t *testing.T) {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /v1/activate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"code\":")
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer to a body that never ends: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "timeout") {
			t.Errorf("body that never ends: %d %s", resp.StatusCode, b)
		}
	})
	t.Run("slow headers", func(t *testing.T) {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /v1/status HTTP/1.1\r\nHost: x\r\n")
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		b, err := io.ReadAll(conn) // the server closes the connection
		if err != nil {
			t.Fatalf("headers that never end: %v (got %q)", err, b)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("connection closed after %v", d)
		}
	})
}

func TestBusy(t *testing.T) {
	f := newFake()
	entered, release := make(chan struct{}), make(chan struct{})
	f.key = func(ctx context.Context, _ []byte) (api.KeyResponse, error) {
		close(entered)
		<-release
		return api.KeyResponse{Title: media.ID{1}}, nil
	}
	c, _ := serve(t, f, ServerOptions{MaxInFlight: 1})
	done := make(chan error, 1)
	go func() {
		_, err := c.Key(t.Context(), []byte{1})
		done <- err
	}()
	<-entered
	if _, err := c.Status(t.Context()); !errors.Is(err, ErrBusy) {
		t.Errorf("a request over the limit: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Errorf("the request in flight: %v", err)
	}
	if _, err := c.Status(t.Context()); err != nil {
		t.Errorf("once the slot is free: %v", err)
	}
}

func TestListen(t *testing.T) {
	dir := shortDir(t)
	path := filepath.Join(dir, "new", "api.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{{filepath.Dir(path), 0o700}, {path, 0o600}} {
		fi, err := os.Stat(c.path)
		if err != nil || fi.Mode().Perm() != c.mode {
			t.Errorf("%s: %v, %v, want mode %o", c.path, fi.Mode(), err, c.mode)
		}
	}
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "listening") {
		t.Errorf("a socket in use: %v", err)
	}

	// A socket left behind by a daemon that died is replaced.
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatal(err)
	}
	l, err = Listen(path)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	l.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket not removed on close: %v", err)
	}

	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "regular file") {
		t.Errorf("a regular file in the way: %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "data" {
		t.Errorf("the file in the way was touched: %q, %v", b, err)
	}

	open := filepath.Join(dir, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o755)
	if _, err := Listen(filepath.Join(open, "api.sock")); err == nil || !strings.Contains(err.Error(), "open to others") {
		t.Errorf("a folder open to others: %v", err)
	}
	if _, err := Listen(filepath.Join(dir, strings.Repeat("x", 120))); err == nil {
		t.Error("a path too long for a socket was accepted")
	}
}

func TestUnavailable(t *testing.T) {
	c := Dial(filepath.Join(shortDir(t), "none.sock"))
	_, err := c.Status(t.Context())
	if err == nil || !IsUnavailable(err) {
		t.Errorf("no daemon: %v (unavailable %v)", err, IsUnavailable(err))
	}
	if IsUnavailable(&Error{Status: 503, Code: "busy"}) {
		t.Error("an answer counted as unavailable")
	}
}
