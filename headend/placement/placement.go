// Package placement decides which media server clusters keep each title,
// so that any m of the n clusters together hold the whole catalog. The
// scheduler uses it to have servers fetch the titles their cluster should
// keep.
package placement

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/boxswarm/boxswarm/media"
)

const placementDomain = "boxswarm placement v1\x00"

// Place says which clusters keep each title: n−m+1 of the n clusters,
// so that any m clusters together hold every title (the n−m clusters left
// out of any m can hold at most n−m of a title's n−m+1 copies).
//
// It uses rendezvous hashing: every cluster gets a score for every title
// from a hash of the two names, and a title goes to its n−m+1
// highest-scoring clusters, listed from the highest. Hence:
//   - A title's clusters depend on that title and the cluster names alone:
//     adding or removing titles moves nothing else.
//   - Adding a cluster with m unchanged adds one copy of each title (on
//     the new cluster, or on the next best) and moves none; adding one
//     while raising m by one, so that each title keeps n−m+1 copies,
//     moves only the copies the new cluster takes over, about one title
//     in n+1 per copy, each from one cluster to the new one.
//   - Each cluster gets about the same share of titles.
func Place(titles []media.ID, clusters []string, m int) (map[media.ID][]string, error) {
	n := len(clusters)
	if m < 1 || m > n {
		return nil, fmt.Errorf("placement: any %d of %d clusters cannot hold the catalog", m, n)
	}
	seen := make(map[string]bool, n)
	for _, c := range clusters {
		if c == "" || seen[c] {
			return nil, fmt.Errorf("placement: cluster name %q empty or repeated", c)
		}
		seen[c] = true
	}
	k := n - m + 1
	type scored struct {
		cluster string
		score   uint64
	}
	out := make(map[media.ID][]string, len(titles))
	scores := make([]scored, n)
	for _, id := range titles {
		if _, ok := out[id]; ok {
			continue
		}
		for i, c := range clusters {
			scores[i] = scored{c, score(id, c)}
		}
		slices.SortFunc(scores, func(a, b scored) int {
			if c := cmp.Compare(b.score, a.score); c != 0 {
				return c
			}
			return cmp.Compare(a.cluster, b.cluster)
		})
		chosen := make([]string, k)
		for i := range chosen {
			chosen[i] = scores[i].cluster
		}
		out[id] = chosen
	}
	return out, nil
}

// For returns the clusters that keep one title, as Place does.
func For(id media.ID, clusters []string, m int) ([]string, error) {
	p, err := Place([]media.ID{id}, clusters, m)
	return p[id], err
}

// score is the rendezvous weight of a cluster for a title.
func score(id media.ID, cluster string) uint64 {
	h := sha256.New()
	h.Write([]byte(placementDomain))
	h.Write(id[:])
	h.Write([]byte(cluster))
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}
