package boxstate

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
	bolt "go.etcd.io/bbolt"
)

func open(t *testing.T, path string) *DB {
	t.Helper()
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func titles(items []api.CatalogItem) []media.ID {
	var out []media.ID
	for _, it := range items {
		out = append(out, it.Title)
	}
	return out
}

func TestCatalog(t *testing.T) {
	now := time.Date(2026, 3, 1, 20, 0, 0, 0, time.UTC)
	a := api.CatalogItem{Title: media.ID{1}, Name: "alpha", Year: 2001}
	b := api.CatalogItem{Title: media.ID{2}, Name: "Beta", Genre: "Drama"}
	c := api.CatalogItem{Title: media.ID{3}, Name: "Gamma", PublishAt: now.Add(time.Hour)}
	d := api.CatalogItem{Title: media.ID{4}, Name: "Delta", PublishAt: now.Add(-time.Hour)}
	a2 := a
	a2.Name = "Zeta"
	path := filepath.Join(t.TempDir(), "box.db")
	db := open(t, path)
	defer func() { db.Close() }()
	// The steps run in order on one file; each states the catalog
	// published by now after it, and the next publish time.
	for _, step := range []struct {
		name    string
		u       api.CatalogUpdate
		invalid bool
		want    []media.ID
		next    time.Time
	}{
		{"full", api.CatalogUpdate{Full: true, Items: []api.CatalogItem{b, a, c}}, false, []media.ID{{1}, {2}}, c.PublishAt},
		{"item added", api.CatalogUpdate{Items: []api.CatalogItem{d}}, false, []media.ID{{1}, {2}, {4}}, c.PublishAt},
		{"item renamed", api.CatalogUpdate{Items: []api.CatalogItem{a2}}, false, []media.ID{{2}, {4}, {1}}, c.PublishAt},
		{"item removed", api.CatalogUpdate{Items: []api.CatalogItem{{Title: media.ID{2}, Removed: true}}}, false, []media.ID{{4}, {1}}, c.PublishAt},
		{"removal of an unknown title", api.CatalogUpdate{Items: []api.CatalogItem{{Title: media.ID{9}, Removed: true}}}, false, []media.ID{{4}, {1}}, c.PublishAt},
		{"bad full: zero title", api.CatalogUpdate{Full: true, Items: []api.CatalogItem{{Name: "nothing"}}}, true, []media.ID{{4}, {1}}, c.PublishAt},
		{"bad full: title twice", api.CatalogUpdate{Full: true, Items: []api.CatalogItem{a, a}}, true, []media.ID{{4}, {1}}, c.PublishAt},
		{"bad full: too many", api.CatalogUpdate{Full: true, Items: make([]api.CatalogItem, api.MaxCatalogItems+1)}, true, []media.ID{{4}, {1}}, c.PublishAt},
		{"bad item: name too long", api.CatalogUpdate{Items: []api.CatalogItem{{Title: media.ID{5}, Name: string(make([]byte, 1001))}}}, true, []media.ID{{4}, {1}}, c.PublishAt},
		{"full replaces", api.CatalogUpdate{Full: true, Items: []api.CatalogItem{b, {Title: media.ID{6}, Removed: true}}}, false, []media.ID{{2}}, time.Time{}},
		{"full and empty", api.CatalogUpdate{Full: true}, false, nil, time.Time{}},
		{"full again", api.CatalogUpdate{Full: true, Items: []api.CatalogItem{c, b}}, false, []media.ID{{2}}, c.PublishAt},
	} {
		err := db.ApplyCatalog(step.u)
		if step.invalid != errors.Is(err, ErrInvalid) || !step.invalid && err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		got, err := db.Catalog(now)
		if err != nil || !slices.Equal(titles(got), step.want) {
			t.Errorf("%s: catalog %v, %v, want %v", step.name, titles(got), err, step.want)
		}
		next, ok, err := db.NextPublish(now)
		if err != nil || ok != !step.next.IsZero() || !next.Equal(step.next) {
			t.Errorf("%s: next publish %v %v %v, want %v", step.name, next, ok, err, step.next)
		}
	}

	// Kept across a restart, whole: manifests and publish times too.
	db.Close()
	db = open(t, path)
	got, err := db.Catalog(now.Add(2 * time.Hour))
	if err != nil || len(got) != 2 || got[0].Name != "Beta" || !got[1].PublishAt.Equal(c.PublishAt) {
		t.Errorf("after reopening: %+v, %v", got, err)
	}
}

func TestLists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "box.db")
	db := open(t, path)
	defer func() { db.Close() }()
	one, two, three := media.ID{1}, media.ID{2}, media.ID{3}
	check := func(step string, want api.PriorityList) {
		t.Helper()
		got, err := db.List()
		if err != nil || got.Version != want.Version || !slices.Equal(got.Titles, want.Titles) {
			t.Errorf("%s: list %+v, %v, want %+v", step, got, err, want)
		}
	}
	check("new file", api.PriorityList{})

	for _, o := range []struct {
		name           string
		pl             api.PriorityList
		taken, changed bool
		invalid        bool
		held           api.PriorityList
	}{
		{"from the web", api.PriorityList{Titles: []media.ID{one, two}, Version: 3}, true, true, false, api.PriorityList{Titles: []media.ID{one, two}, Version: 3}},
		{"repeated", api.PriorityList{Titles: []media.ID{one, two}, Version: 3}, true, false, false, api.PriorityList{Titles: []media.ID{one, two}, Version: 3}},
		{"older", api.PriorityList{Titles: []media.ID{three}, Version: 2}, false, false, false, api.PriorityList{Titles: []media.ID{one, two}, Version: 3}},
		{"same version, head-end's titles", api.PriorityList{Titles: []media.ID{two}, Version: 3}, true, true, false, api.PriorityList{Titles: []media.ID{two}, Version: 3}},
		{"title twice", api.PriorityList{Titles: []media.ID{one, one}, Version: 9}, false, false, true, api.PriorityList{Titles: []media.ID{two}, Version: 3}},
		{"emptied", api.PriorityList{Titles: nil, Version: 4}, true, true, false, api.PriorityList{Version: 4}},
	} {
		taken, changed, err := db.OfferList(o.pl)
		if taken != o.taken || changed != o.changed || o.invalid != errors.Is(err, ErrInvalid) || !o.invalid && err != nil {
			t.Errorf("%s: taken %v changed %v, %v", o.name, taken, changed, err)
		}
		check(o.name, o.held)
	}

	edit, was, err := db.EditList([]media.ID{three, one})
	if err != nil || edit.Version != 5 || was.Version != 4 {
		t.Fatalf("edit: %+v was %+v, %v", edit, was, err)
	}
	check("edited", edit)
	if err := db.UndoEdit(edit, was); err != nil {
		t.Fatal(err)
	}
	check("undone", was)

	// An edit the head-end's list overtook stays overtaken.
	edit, was, _ = db.EditList([]media.ID{three})
	web := api.PriorityList{Titles: []media.ID{one}, Version: edit.Version}
	if taken, _, _ := db.OfferList(web); !taken {
		t.Fatal("the head-end's list of the same version was not taken")
	}
	if err := db.UndoEdit(edit, was); err != nil {
		t.Fatal(err)
	}
	check("undo after the head-end's list", web)

	if _, _, err := db.EditList(make([]media.ID, api.MaxTitles+1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("an edit over the limit: %v", err)
	}
	db.Close()
	db = open(t, path)
	check("reopened", web)
}

func TestFileChecks(t *testing.T) {
	dir := t.TempDir()
	// Some other bbolt file.
	other := filepath.Join(dir, "other.db")
	bdb, err := bolt.Open(other, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	bdb.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("media")); return err })
	bdb.Close()
	if _, err := Open(other); err == nil {
		t.Error("a bbolt file of something else was opened")
	}
	// Not a bbolt file at all.
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, make([]byte, 8192), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(junk); err == nil {
		t.Error("a file of zeros was opened")
	}
	// A damaged item is reported, not skipped.
	path := filepath.Join(dir, "box.db")
	db := open(t, path)
	if err := db.ApplyCatalog(api.CatalogUpdate{Full: true, Items: []api.CatalogItem{{Title: media.ID{1}, Name: "One"}}}); err != nil {
		t.Fatal(err)
	}
	db.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketCatalog).Put([]byte{2}, []byte("{")) })
	if _, err := db.Catalog(time.Now()); err == nil {
		t.Error("a damaged catalog item went unnoticed")
	}
	db.Close()
}
