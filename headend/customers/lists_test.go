package customers_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/media"
)

func TestListEdits(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	a, b := e.signUp("alice", "DE")
	none := media.ID{}
	steps := []struct {
		name    string
		edit    func() (customers.List, error)
		want    []media.ID
		version uint64
		err     error
	}{
		{"add", func() (customers.List, error) { return e.svc.ListAdd(ctx, a.ID, b.Ref, tMatrix) },
			[]media.ID{tMatrix}, 1, nil},
		{"add at end", func() (customers.List, error) { return e.svc.ListAdd(ctx, a.ID, b.Ref, tIndie) },
			[]media.ID{tMatrix, tIndie}, 2, nil},
		{"add before", func() (customers.List, error) { return e.svc.ListAddBefore(ctx, a.ID, b.Ref, tLong, tIndie) },
			[]media.ID{tMatrix, tLong, tIndie}, 3, nil},
		{"move to front", func() (customers.List, error) { return e.svc.ListMove(ctx, a.ID, b.Ref, tIndie, tMatrix) },
			[]media.ID{tIndie, tMatrix, tLong}, 4, nil},
		{"move to end", func() (customers.List, error) { return e.svc.ListMove(ctx, a.ID, b.Ref, tIndie, none) },
			[]media.ID{tMatrix, tLong, tIndie}, 5, nil},
		{"move nowhere keeps the version", func() (customers.List, error) { return e.svc.ListMove(ctx, a.ID, b.Ref, tMatrix, tLong) },
			[]media.ID{tMatrix, tLong, tIndie}, 5, nil},
		{"remove", func() (customers.List, error) { return e.svc.ListRemove(ctx, a.ID, b.Ref, tLong) },
			[]media.ID{tMatrix, tIndie}, 6, nil},
		{"add twice", func() (customers.List, error) { return e.svc.ListAdd(ctx, a.ID, b.Ref, tMatrix) }, nil, 0, customers.ErrAlreadyListed},
		{"remove unlisted", func() (customers.List, error) { return e.svc.ListRemove(ctx, a.ID, b.Ref, tLong) }, nil, 0, customers.ErrNotListed},
		{"move before unlisted", func() (customers.List, error) { return e.svc.ListMove(ctx, a.ID, b.Ref, tMatrix, tLong) }, nil, 0, customers.ErrNotListed},
		{"add unpublished", func() (customers.List, error) { return e.svc.ListAdd(ctx, a.ID, b.Ref, tPremiere) }, nil, 0, customers.ErrNotPublished},
		{"add blocked in the box's region", func() (customers.List, error) { return e.svc.ListAdd(ctx, a.ID, b.Ref, tUS) }, nil, 0, customers.ErrRegionBlocked},
		{"add unsubscribed", func() (customers.List, error) { return e.svc.ListAdd(ctx, a.ID, b.Ref, tOther) }, nil, 0, customers.ErrNotSubscribed},
		{"add unknown", func() (customers.List, error) { return e.svc.ListAdd(ctx, a.ID, b.Ref, mid(99)) }, nil, 0, customers.ErrUnknownTitle},
		{"unknown box", func() (customers.List, error) { return e.svc.ListAdd(ctx, a.ID, "nobox", tIndie) }, nil, 0, customers.ErrNotYourBox},
	}
	for _, st := range steps {
		l, err := st.edit()
		if !errors.Is(err, st.err) {
			t.Fatalf("%s: %v, want %v", st.name, err, st.err)
		}
		if st.err != nil {
			continue
		}
		if !slices.Equal(l.Titles, st.want) || l.Version != st.version || l.Box != b.Ref {
			t.Fatalf("%s: %v version %d, want %v version %d", st.name, l.Titles, l.Version, st.want, st.version)
		}
		stored, err := e.svc.List(ctx, a.ID, b.Ref)
		if err != nil || !slices.Equal(stored.Titles, st.want) || stored.Version != st.version {
			t.Fatalf("%s: stored %v version %d, %v", st.name, stored.Titles, stored.Version, err)
		}
	}
	// The box has not activated: nothing went to the scheduler.
	if n := len(e.sink.Sent()); n != 0 {
		t.Errorf("%d lists sent for a box not activated", n)
	}
	_, _, err := e.svc.ListForScheduler(ctx, b.Ref)
	wantErr(t, "list for a box not activated", err, customers.ErrNotActivated)

	// Another account's box is not yours, for reading or writing.
	bob, bobBox := e.signUp("bob", "DE")
	_, err = e.svc.List(ctx, bob.ID, b.Ref)
	wantErr(t, "reading another's list", err, customers.ErrNotYourBox)
	_, err = e.svc.ListRemove(ctx, bob.ID, b.Ref, tMatrix)
	wantErr(t, "editing another's list", err, customers.ErrNotYourBox)
	if l, err := e.svc.List(ctx, bob.ID, bobBox.Ref); err != nil || len(l.Titles) != 0 || l.Version != 0 {
		t.Errorf("a new box's list: %+v, %v", l, err)
	}

	// Suspended: no edits.
	must(t, e.svc.SetStatus(ctx, a.ID, customers.StatusSuspended, "unpaid"))
	_, err = e.svc.ListRemove(ctx, a.ID, b.Ref, tMatrix)
	wantErr(t, "edit while suspended", err, customers.ErrSuspended)
}

func TestListSync(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	a, b := e.signUp("alice", "DE")
	dev := api.BoxID{0xB0}
	_, err := e.svc.BoxActivated(ctx, b.Code, dev)
	must(t, err)

	// Web edits reach the scheduler, with their versions.
	_, err = e.svc.ListAdd(ctx, a.ID, b.Ref, tMatrix)
	must(t, err)
	_, err = e.svc.ListAdd(ctx, a.ID, b.Ref, tIndie)
	must(t, err)
	sent := e.sink.Sent()
	if len(sent) != 2 || sent[1].Box != dev || sent[1].Version != 2 || !slices.Equal(sent[1].Titles, []media.ID{tMatrix, tIndie}) {
		t.Fatalf("sent %+v", sent)
	}
	box, pl, err := e.svc.ListForScheduler(ctx, b.Ref)
	if err != nil || box != dev || pl.Version != 2 || !slices.Equal(pl.Titles, []media.ID{tMatrix, tIndie}) {
		t.Errorf("list for the scheduler: %s %+v, %v", box, pl, err)
	}
	if err := pl.Validate(); err != nil {
		t.Errorf("list for the scheduler does not validate: %v", err)
	}

	// From the box: a higher version wins; the same or a lower one loses
	// and the head-end's list comes back.
	cases := []struct {
		name     string
		pl       api.PriorityList
		accepted bool
		want     []media.ID
		version  uint64
		err      error
	}{
		{"same version", api.PriorityList{Titles: []media.ID{tIndie}, Version: 2}, false, []media.ID{tMatrix, tIndie}, 2, nil},
		{"older version", api.PriorityList{Titles: nil, Version: 1}, false, []media.ID{tMatrix, tIndie}, 2, nil},
		{"newer version", api.PriorityList{Titles: []media.ID{tIndie, tMatrix, tOther}, Version: 3}, true, []media.ID{tIndie, tMatrix, tOther}, 3, nil},
		{"jump ahead", api.PriorityList{Titles: []media.ID{tIndie}, Version: 10}, true, []media.ID{tIndie}, 10, nil},
		{"unknown title", api.PriorityList{Titles: []media.ID{mid(99)}, Version: 11}, false, nil, 0, customers.ErrUnknownTitle},
		{"duplicate", api.PriorityList{Titles: []media.ID{tIndie, tIndie}, Version: 11}, false, nil, 0, customers.ErrInvalid},
	}
	for _, tc := range cases {
		l, accepted, err := e.svc.ListFromBox(ctx, dev, tc.pl)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.err)
			continue
		}
		if tc.err == nil && (accepted != tc.accepted || !slices.Equal(l.Titles, tc.want) || l.Version != tc.version) {
			t.Errorf("%s: accepted %v, %v version %d; want %v, %v version %d", tc.name, accepted, l.Titles, l.Version,
				tc.accepted, tc.want, tc.version)
		}
	}
	// The next web edit follows the box's version.
	l, err := e.svc.ListAdd(ctx, a.ID, b.Ref, tLong)
	if err != nil || l.Version != 11 || !slices.Equal(l.Titles, []media.ID{tIndie, tLong}) {
		t.Errorf("web edit after the box's: %v version %d, %v", l.Titles, l.Version, err)
	}
	_, _, err = e.svc.ListFromBox(ctx, api.BoxID{0xEE}, api.PriorityList{Version: 99})
	wantErr(t, "list from an unknown box", err, customers.ErrNotYourBox)

	// The scheduler being down does not lose the edit.
	e.sink.FailWith(errors.New("scheduler down"))
	l, err = e.svc.ListRemove(ctx, a.ID, b.Ref, tLong)
	if err != nil || l.Version != 12 {
		t.Errorf("edit with the scheduler down: version %d, %v", l.Version, err)
	}
	_, pl, _ = e.svc.ListForScheduler(ctx, b.Ref)
	if pl.Version != 12 {
		t.Errorf("list for the scheduler after a failed push: version %d", pl.Version)
	}
}

func TestListFull(t *testing.T) {
	e := newEnv(t)
	e.catalog()
	a, b := e.signUp("alice", "DE")
	dev := api.BoxID{1}
	_, err := e.svc.BoxActivated(ctx, b.Code, dev)
	must(t, err)
	full := api.PriorityList{Version: 1}
	for i := range customers.MaxListTitles {
		id := media.ID{0xF0, byte(i >> 8), byte(i)}
		full.Titles = append(full.Titles, id)
	}
	// Titles the box lists must exist; one transaction stores them fast.
	must(t, e.store.Update(ctx, func(tx customers.Tx) error {
		for _, id := range full.Titles {
			if err := tx.PutTitle(customers.Title{Media: id, Catalog: "indie", Name: "Filler", Regions: []string{"*"}}); err != nil {
				return err
			}
		}
		return nil
	}))
	_, accepted, err := e.svc.ListFromBox(ctx, dev, full)
	if err != nil || !accepted {
		t.Fatalf("full list from the box: %v, %v", accepted, err)
	}
	_, err = e.svc.ListAdd(ctx, a.ID, b.Ref, tIndie)
	wantErr(t, "add to a full list", err, customers.ErrListFull)
}
