package placement

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"testing"

	"github.com/boxswarm/boxswarm/media"
)

func catalog(n int, from int) []media.ID {
	ids := make([]media.ID, n)
	for i := range ids {
		binary.BigEndian.PutUint64(ids[i][:], uint64(from+i))
		ids[i][15] = 0x5a
	}
	return ids
}

func clusterNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("noc-%d", i)
	}
	return out
}

// TestPlacementCovers checks, for every n up to 8 and every m, that every
// m-subset of the clusters holds every title, and that each title has
// exactly n−m+1 distinct clusters.
func TestPlacementCovers(t *testing.T) {
	titles := catalog(400, 0)
	for n := 1; n <= 8; n++ {
		clusters := clusterNames(n)
		for m := 1; m <= n; m++ {
			p, err := Place(titles, clusters, m)
			if err != nil {
				t.Fatal(err)
			}
			// Each title as a bitmask of clusters.
			masks := make([]uint, len(titles))
			for i, id := range titles {
				cs := p[id]
				if len(cs) != n-m+1 {
					t.Fatalf("n=%d m=%d: title on %d clusters", n, m, len(cs))
				}
				for _, c := range cs {
					j := slices.Index(clusters, c)
					if j < 0 || masks[i]&(1<<j) != 0 {
						t.Fatalf("n=%d m=%d: clusters %v", n, m, cs)
					}
					masks[i] |= 1 << j
				}
			}
			for subset := uint(0); subset < 1<<n; subset++ {
				if bits.OnesCount(subset) != m {
					continue
				}
				for i, mask := range masks {
					if mask&subset == 0 {
						t.Fatalf("n=%d m=%d: clusters %b hold no copy of title %d (on %b)", n, m, subset, i, mask)
					}
				}
			}
		}
	}
}

// TestPlacementBalance checks that clusters get about the same number of
// titles: within 15% of each other for a catalog of 10000.
func TestPlacementBalance(t *testing.T) {
	titles := catalog(10000, 0)
	for n := 2; n <= 8; n++ {
		clusters := clusterNames(n)
		for m := 1; m <= n; m++ {
			p, err := Place(titles, clusters, m)
			if err != nil {
				t.Fatal(err)
			}
			count := map[string]int{}
			for _, cs := range p {
				for _, c := range cs {
					count[c]++
				}
			}
			lo, hi := len(titles), 0
			for _, c := range clusters {
				lo, hi = min(lo, count[c]), max(hi, count[c])
			}
			if float64(hi) > 1.15*float64(lo) {
				t.Errorf("n=%d m=%d: %d to %d titles per cluster", n, m, lo, hi)
			}
		}
	}
}

func TestPlacementStable(t *testing.T) {
	titles := catalog(2000, 0)
	clusters := clusterNames(5)
	before, _ := Place(titles, clusters, 3)

	// Adding titles moves nothing.
	after, _ := Place(append(catalog(500, 1_000_000), titles...), clusters, 3)
	for _, id := range titles {
		if !slices.Equal(before[id], after[id]) {
			t.Fatalf("title %s moved from %v to %v when titles were added", id, before[id], after[id])
		}
	}

	// A sixth cluster with m unchanged: one more copy each, none moved.
	grown := append(clusterNames(5), "noc-new")
	after, _ = Place(titles, grown, 3)
	onNew := 0
	for _, id := range titles {
		b, a := before[id], after[id]
		if len(a) != len(b)+1 || !isSubset(b, a) {
			t.Fatalf("title %s: %v became %v", id, b, a)
		}
		if slices.Contains(a, "noc-new") {
			onNew++
		}
	}
	t.Logf("m unchanged: %d of %d titles got a copy on the new cluster", onNew, len(titles))

	// A sixth cluster with m raised, three copies each: only titles the
	// new cluster takes move, one copy each, to the new cluster; about
	// 3 in 6 titles.
	after, _ = Place(titles, grown, 4)
	moved := 0
	for _, id := range titles {
		b, a := before[id], after[id]
		if len(a) != len(b) {
			t.Fatalf("title %s: %v became %v", id, b, a)
		}
		if slices.Equal(sorted(a), sorted(b)) {
			continue
		}
		moved++
		gone := difference(b, a)
		came := difference(a, b)
		if len(gone) != 1 || len(came) != 1 || came[0] != "noc-new" {
			t.Fatalf("title %s: %v became %v", id, b, a)
		}
	}
	if want := len(titles) * 3 / 6; moved < want*8/10 || moved > want*12/10 {
		t.Errorf("%d titles moved, want about %d", moved, want)
	}

	// Losing a cluster with m unchanged: copies only go.
	shrunk := clusterNames(4)
	after, _ = Place(titles, shrunk, 3)
	for _, id := range titles {
		if !isSubset(after[id], before[id]) {
			t.Fatalf("title %s: %v became %v", id, before[id], after[id])
		}
	}
}

func TestPlacementErrors(t *testing.T) {
	titles := catalog(3, 0)
	for _, tc := range []struct {
		clusters []string
		m        int
	}{
		{clusterNames(3), 0},
		{clusterNames(3), 4},
		{nil, 1},
		{[]string{"a", "b", "a"}, 2},
		{[]string{"a", ""}, 1},
	} {
		if _, err := Place(titles, tc.clusters, tc.m); err == nil {
			t.Errorf("Place(%v, %d) accepted", tc.clusters, tc.m)
		}
	}
	p, err := Place(append(titles, titles[0]), clusterNames(3), 3)
	if err != nil || len(p) != 3 {
		t.Errorf("repeated title: %v, %v", p, err)
	}
}

func isSubset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func difference(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func sorted(a []string) []string { return slices.Sorted(slices.Values(a)) }
