package customers_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/media"
)

func TestBoxCatalog(t *testing.T) {
	for name, store := range map[string]func(*testing.T) customers.Store{"bolt": boltStore, "postgres": pgStore} {
		t.Run(name, func(t *testing.T) {
			e := newEnvOn(t, store(t))
			e.catalog()
			_, deBox := e.signUp("alice", "DE")
			_, usBox := e.signUp("bob", "US")
			de, us := api.BoxID{1}, api.BoxID{2}
			for _, x := range []struct {
				b customers.Box
				d api.BoxID
			}{{deBox, de}, {usBox, us}} {
				if _, err := e.svc.BoxActivated(ctx, x.b.Code, x.d); err != nil {
					t.Fatal(err)
				}
			}

			// Sorted by name; the premiere is there ahead of its publish
			// time; other regions' and unsubscribed titles are not.
			want := map[api.BoxID][]media.ID{
				de: {tFree, tIndie, tLong, tPremiere, tMatrix},
				us: {tUS, tFree, tIndie, tLong, tPremiere},
			}
			for d, ids := range want {
				var got []media.ID
				for off := 0; ; off += 2 {
					p, err := e.svc.BoxCatalog(ctx, d, off, 2)
					if err != nil {
						t.Fatal(err)
					}
					for _, ti := range p.Titles {
						got = append(got, ti.Media)
					}
					if off+2 >= p.Total {
						break
					}
				}
				if !slices.Equal(got, ids) {
					t.Errorf("box %s catalog %v, want %v", d, got, ids)
				}
			}
			if _, err := e.svc.BoxCatalog(ctx, api.BoxID{9}, 0, 10); !errors.Is(err, customers.ErrNotYourBox) {
				t.Errorf("unknown box: %v, want ErrNotYourBox", err)
			}

			for _, c := range []struct {
				title media.ID
				want  []api.BoxID
			}{
				{tMatrix, []api.BoxID{de}},
				{tUS, []api.BoxID{us}},
				{tIndie, []api.BoxID{de, us}},
				{tOther, nil},
			} {
				var ti customers.Title
				must(t, e.store.View(ctx, func(tx customers.ReadTx) (err error) { ti, err = tx.Title(c.title); return err }))
				got, err := e.svc.Audience(ctx, ti, []api.BoxID{de, us, {9}})
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, c.want) {
					t.Errorf("audience of %s: %v, want %v", ti.Name, got, c.want)
				}
			}
		})
	}
}
