package local

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

// fuzzRoutes are the requests with a body, and changes with its query.
var fuzzRoutes = []struct{ method, path string }{
	{http.MethodPost, "/v1/activate"},
	{http.MethodPut, "/v1/list"},
	{http.MethodPost, "/v1/progress"},
	{http.MethodPost, "/v1/pass"},
	{http.MethodPost, "/v1/key"},
	{http.MethodGet, "/v1/changes?"}, // the body is the query
}

// FuzzRequest sends arbitrary bodies to every endpoint that reads one:
// the answer is a success or a well-formed client error, never a panic or
// an internal error, and the backend (which panics on input that fails
// the checks) sees only checked input.
func FuzzRequest(f *testing.F) {
	seeds := []struct {
		route int
		body  string
	}{
		{0, `{"code":"ABCD-EFGH-IJKL-MNOP"}`},
		{0, `{"code":""}`},
		{0, `{"code":"x","extra":1}`},
		{1, `{"titles":[[1,2,3],[4,5,6]]}`},
		{1, `{"titles":[]}`},
		{1, `{"titles":[[0]]}`},
		{2, `{"titles":[[1],[1]]}`},
		{2, `{"titles":[[255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255,255]]}`},
		{3, `{"title":[1],"confirm":true,"price":"3.99 EUR"}`},
		{3, `{"title":[1]} trailing`},
		{4, `{"pass":"QlhTV1BBU1MAAAAB"}`},
		{4, `{"pass":null}`},
		{5, `since=12`},
		{5, `since=1&since=2`},
		{5, `since=%ff`},
	}
	for _, s := range seeds {
		f.Add(uint8(s.route), []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		fb := newFake()
		s := NewServer(fb, ServerOptions{PollWait: 1}) // a poll that sees no change ends at once
		var req *http.Request
		if r.method == http.MethodGet {
			req = httptest.NewRequest(r.method, "/v1/changes", nil)
			req.URL.RawQuery = string(body)
		} else {
			req = httptest.NewRequest(r.method, r.path, bytes.NewReader(body))
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		switch w.Code {
		case http.StatusOK, http.StatusNoContent:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			var e errorResponse
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code == "" {
				t.Fatalf("%s %s: error answer %q", r.method, r.path, w.Body.Bytes())
			}
			if calls := fb.Calls(); len(calls) > 0 {
				t.Fatalf("%s %s: refused with %s, but the backend was called: %v", r.method, r.path, e.Error, calls)
			}
		default:
			t.Fatalf("%s %s: status %d: %s", r.method, r.path, w.Code, w.Body.Bytes())
		}
		if w.Code != http.StatusOK || r.path != "/v1/list" {
			return
		}
		var pl api.PriorityList
		if err := json.Unmarshal(w.Body.Bytes(), &pl); err != nil || pl.Validate() != nil {
			t.Fatalf("list answer %q: %v", w.Body.Bytes(), err)
		}
		for _, id := range pl.Titles {
			if id == (media.ID{}) {
				t.Fatal("a zero title was stored")
			}
		}
	})
}
