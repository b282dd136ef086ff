package scheduler

import (
	"reflect"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
)

// TestRules has one case per scheduling rule. Each sets up boxes, titles
// and lists, runs the loop, and names the transfers it expects as
// "receiver<-sender:title[portions]".
func TestRules(t *testing.T) {
	all := func(n int) string { return "[{0 " + strconv.Itoa(n-1) + "}]" }
	for _, tc := range []struct {
		name  string
		setup func(h *harness) []api.BoxID // the receivers whose transfers are checked
		tweak func(*Config)
		want  []string
	}{
		{
			name: "high priority first: a box with nothing to watch beats one with something",
			setup: func(h *harness) []api.BoxID {
				h.title("T", 10)
				h.title("W", 10)
				d := h.box("donor", boxOpts{up: 10_000})
				h.holds(d, "T")
				watching := h.box("watching", boxOpts{})
				h.holds(watching, "W")
				h.list(watching, "W", "T")
				idle := h.box("idle", boxOpts{})
				h.list(idle, "T")
				h.s.cfg.MaxUploads = 1 // one slot: only one of them can be served
				h.tick()
				return []api.BoxID{watching, idle}
			},
			want: []string{"idle<-donor:T" + all(10)},
		},
		{
			name: "least recently served receiver first",
			setup: func(h *harness) []api.BoxID {
				h.title("T", 10)
				d := h.box("donor", boxOpts{})
				h.holds(d, "T")
				a := h.box("served-recently", boxOpts{})
				b := h.box("served-long-ago", boxOpts{})
				h.run(func(s *Scheduler) error {
					s.st.boxes[s.st.boxByID[a]].lastServed = h.now.UnixMilli() - 1000
					s.st.boxes[s.st.boxByID[b]].lastServed = h.now.UnixMilli() - 100_000
					return nil
				})
				h.list(a, "T")
				h.list(b, "T")
				h.s.cfg.MaxUploads = 1
				h.tick()
				return []api.BoxID{a, b}
			},
			want: []string{"served-long-ago<-donor:T" + all(10)},
		},
		{
			name: "top-ranked list item first",
			setup: func(h *harness) []api.BoxID {
				h.title("first", 10)
				h.title("second", 10)
				d := h.box("donor", boxOpts{})
				h.holds(d, "first", "second")
				r := h.box("viewer", boxOpts{})
				h.list(r, "second", "first")
				h.tick()
				return []api.BoxID{r}
			},
			want: []string{"viewer<-donor:second" + all(10)},
		},
		{
			name: "donor: least recently sending",
			setup: func(h *harness) []api.BoxID {
				h.title("T", 10)
				busy := h.box("sent-recently", boxOpts{})
				rested := h.box("sent-long-ago", boxOpts{})
				h.holds(busy, "T")
				h.holds(rested, "T")
				h.run(func(s *Scheduler) error {
					s.st.boxes[s.st.boxByID[busy]].lastSent = h.now.UnixMilli() - 1000
					s.st.boxes[s.st.boxByID[rested]].lastSent = h.now.UnixMilli() - 100_000
					return nil
				})
				r := h.box("viewer", boxOpts{down: 5000})
				h.list(r, "T")
				h.tick()
				return []api.BoxID{r}
			},
			want: []string{"viewer<-sent-long-ago:T" + all(10)},
		},
		{
			name: "donor: the receiver's ISP first",
			setup: func(h *harness) []api.BoxID {
				h.title("T", 10)
				far := h.box("other-isp", boxOpts{isp: "isp-b"})
				near := h.box("same-isp", boxOpts{isp: "isp-a"})
				h.holds(far, "T")
				h.holds(near, "T")
				h.run(func(s *Scheduler) error { // far would win on sending history alone
					s.st.boxes[s.st.boxByID[near]].lastSent = h.now.UnixMilli() - 1000
					return nil
				})
				r := h.box("viewer", boxOpts{isp: "isp-a", down: 5000})
				h.list(r, "T")
				h.tick()
				return []api.BoxID{r}
			},
			want: []string{"viewer<-same-isp:T" + all(10)},
		},
		{
			name: "donor: measured slow toward the receiver loses",
			setup: func(h *harness) []api.BoxID {
				h.title("T", 10)
				slow := h.box("measured-slow", boxOpts{})
				fast := h.box("not-measured", boxOpts{})
				h.holds(slow, "T")
				h.holds(fast, "T")
				r := h.box("viewer", boxOpts{down: 8000})
				h.mustDeliver(slow, api.Measurement{Peer: r, Kbps: 300, RTTMilli: 80})
				h.run(func(s *Scheduler) error {
					s.st.boxes[s.st.boxByID[fast]].lastSent = h.now.UnixMilli() - 1000
					return nil
				})
				h.list(r, "T")
				h.tick()
				return []api.BoxID{r}
			},
			want: []string{"viewer<-not-measured:T" + all(10)},
		},
		{
			name: "servers last when peers can send",
			setup: func(h *harness) []api.BoxID {
				h.title("T", 10)
				srv := h.box("server", boxOpts{server: true, up: 1_000_000, addr: "127.0.0.1:9"})
				peer := h.box("peer", boxOpts{up: 20_000})
				h.holds(srv, "T")
				h.holds(peer, "T")
				r := h.box("viewer", boxOpts{down: 10_000})
				h.list(r, "T")
				h.tick()
				return []api.BoxID{r}
			},
			want: []string{"viewer<-peer:T" + all(10)},
		},
		{
			name:  "servers first when the operator prefers them",
			tweak: func(c *Config) { c.Policy = PreferServers },
			setup: func(h *harness) []api.BoxID {
				h.title("T", 10)
				srv := h.box("server", boxOpts{server: true, up: 1_000_000, addr: "127.0.0.1:9"})
				peer := h.box("peer", boxOpts{up: 20_000})
				h.holds(srv, "T")
				h.holds(peer, "T")
				r := h.box("viewer", boxOpts{down: 10_000})
				h.list(r, "T")
				h.tick()
				return []api.BoxID{r}
			},
			want: []string{"viewer<-server:T" + all(10)},
		},
		{
			name: "several donors up to the receiver's downlink, portions in proportion",
			setup: func(h *harness) []api.BoxID {
				h.title("T", 90)
				for _, n := range []string{"d1", "d2", "d3", "d4"} {
					d := h.box(n, boxOpts{up: 10_000})
					h.holds(d, "T")
				}
				r := h.box("viewer", boxOpts{down: 30_000})
				h.list(r, "T")
				h.tick()
				return []api.BoxID{r}
			},
			want: []string{"viewer<-d1:T[{0 29}]", "viewer<-d2:T[{30 59}]", "viewer<-d3:T[{60 89}]"},
		},
		{
			name: "the title is not delivered before its publish time",
			setup: func(h *harness) []api.BoxID {
				h.title("soon", 10)
				h.run(func(s *Scheduler) error {
					s.st.titles[s.st.titleBy[h.titles["soon"]]].publishAt = h.now.Add(time.Hour).UnixMilli()
					return nil
				})
				d := h.box("donor", boxOpts{})
				h.holds(d, "soon")
				r := h.box("viewer", boxOpts{})
				h.list(r, "soon")
				h.tick()
				return []api.BoxID{r}
			},
			want: nil,
		},
		{
			name: "a box still receiving a title sends the pieces it has",
			setup: func(h *harness) []api.BoxID {
				h.title("T", 20)
				part := h.box("half-there", boxOpts{up: 10_000})
				h.mustDeliver(part, api.Inventory{Titles: []api.TitleState{{Title: h.titles["T"], Have: []byte{0xff, 0xc0, 0}}}})
				h.run(func(s *Scheduler) error { // it is receiving it right now
					t := s.st.titleBy[h.titles["T"]]
					s.st.titles[t].partial = append(s.st.titles[t].partial, s.st.boxByID[part])
					return nil
				})
				r := h.box("viewer", boxOpts{down: 5000})
				h.list(r, "T")
				h.tick()
				return []api.BoxID{r}
			},
			want: []string{"viewer<-half-there:T[{0 9}]"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tweaks []func(*Config)
			if tc.tweak != nil {
				tweaks = append(tweaks, tc.tweak)
			}
			h := newHarness(t, tweaks...)
			var got []string
			for _, r := range tc.setup(h) {
				got = append(got, h.describe(r, h.starts(r))...)
			}
			sort.Strings(got)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("transfers:\n got  %v\n want %v", got, tc.want)
			}
		})
	}
}
