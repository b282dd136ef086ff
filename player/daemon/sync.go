package daemon

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
	"github.com/boxswarm/boxswarm/p2p/local"
	"github.com/boxswarm/boxswarm/player/tv"
)

// Following the transfer daemon: its state, and the list edits that go
// back to it.

// state is one reading of the transfer daemon.
type state struct {
	status   local.Status
	catalog  []api.CatalogItem
	list     api.PriorityList
	progress map[media.ID]local.Progress
}

// syncLoop follows the transfer daemon: a long poll for changes, then a
// fresh reading, at most every RefreshEvery.
func (d *Daemon) syncLoop(ctx context.Context) {
	var since uint64
	var down time.Time
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		n, err := d.c.Changes(ctx, since)
		var st state
		if err == nil {
			st, err = d.read(ctx)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if down.IsZero() {
				down = d.o.Now()
				d.log.Warn("transfer daemon unreachable", "err", err)
			}
			downFor := d.o.Now().Sub(down)
			d.post(ctx, func() { d.unreachable(err, downFor) })
			sleep(ctx, wait)
			wait = min(2*wait, 2*time.Second)
			continue
		}
		if !down.IsZero() {
			d.log.Info("transfer daemon reachable again", "after", d.o.Now().Sub(down).Round(time.Millisecond))
		}
		since, down, wait = n, time.Time{}, 100*time.Millisecond
		d.post(ctx, func() { d.apply(st) })
		sleep(ctx, d.o.RefreshEvery)
	}
}

// read takes one reading of the transfer daemon's state.
func (d *Daemon) read(ctx context.Context) (state, error) {
	var st state
	var err error
	if st.status, err = d.c.Status(ctx); err != nil {
		return st, err
	}
	if st.catalog, err = d.c.Catalog(ctx); err != nil {
		return st, err
	}
	if st.list, err = d.c.List(ctx); err != nil {
		return st, err
	}
	if st.progress, err = d.c.Progress(ctx, st.list.Titles); err != nil {
		return st, err
	}
	return st, nil
}

// unreachable shows the service screen once the transfer daemon has
// been unreachable too long.
func (d *Daemon) unreachable(err error, since time.Duration) {
	if since < d.o.ServiceAfter || d.service {
		return
	}
	d.log.Error("transfer daemon unreachable: showing the service screen", "for", since.Round(time.Second), "err", err)
	d.showService("The box's transfer service is not responding.", err.Error())
	d.serviceDown = true
}

func (d *Daemon) showService(reason, detail string) {
	if d.sess != nil {
		d.sess.stop(d, "")
	}
	d.app.ShowService(tv.ServiceView{Reason: reason, Detail: detail, Contact: d.o.Contact})
	d.service = true
}

// apply takes a reading of the transfer daemon.
func (d *Daemon) apply(st state) {
	prev := d.status
	d.status, d.hadStatus = st.status, true
	d.catalog, d.progress = st.catalog, st.progress
	if d.listEdits == 0 {
		d.list = slices.Clone(st.list.Titles)
	}
	if d.service && d.serviceDown {
		// The transfer daemon is back: leave the service screen. (The
		// interface has no call for that; Activated goes to My List.)
		d.service, d.serviceDown = false, false
		d.app.Activated()
		d.log.Info("service screen left: the transfer daemon answers again")
	}
	switch {
	case d.service:
	case st.status.NeedsCode && d.app.Screen() != tv.ScreenActivation:
		d.log.Info("box not activated: showing the activation screen")
		d.app.ShowActivation()
	case st.status.Activated && d.app.Screen() == tv.ScreenActivation:
		d.app.Activated()
	}
	if prev.Connected && !st.status.Connected && st.status.Activated && d.app.Screen() == tv.ScreenMyList {
		d.app.Notify("The box has lost its connection to the service; downloads and rentals wait for it.")
	}
	d.setData()
}

// setData gives the interface the list and catalog as the daemon knows
// them.
func (d *Daemon) setData() {
	now := d.o.Now()
	d.dataAt = now
	byID := make(map[media.ID]api.CatalogItem, len(d.catalog))
	data := tv.Data{Catalog: make([]tv.Title, 0, len(d.catalog))}
	for _, it := range d.catalog {
		byID[it.Title] = it
		data.Catalog = append(data.Catalog, d.title(it))
	}
	for _, id := range d.list {
		it, ok := byID[id]
		if !ok {
			// Listed but not published here (yet): still the viewer's.
			it = api.CatalogItem{Title: id, Name: "Title " + id.String()[:8]}
		}
		li := tv.ListItem{Title: d.title(it)}
		switch p := d.progress[id]; {
		case p.Complete:
			li.Download = tv.Downloaded
		case p.Have > 0 && p.Pieces > 0:
			li.Download, li.Progress = tv.Downloading, float64(p.Have)/float64(p.Pieces)
		}
		if end, ok := d.windows[id]; ok && end.After(now) {
			li.ViewLeft = end.Sub(now)
		}
		data.List = append(data.List, li)
	}
	d.app.SetData(data)
}

func (d *Daemon) title(it api.CatalogItem) tv.Title {
	t := tv.Title{ID: it.Title.String(), Name: it.Name, Length: time.Duration(it.Minutes) * time.Minute}
	if it.Genre != "" {
		t.Genres = []string{it.Genre}
	}
	if o, ok := d.offers[it.Title]; ok {
		t.Price, t.Window, t.Buy = o.price, o.window, o.buy
	}
	return t
}

// name is a title's name for messages.
func (d *Daemon) name(id media.ID) string {
	for _, it := range d.catalog {
		if it.Title == id {
			return it.Name
		}
	}
	return "Title " + id.String()[:8]
}

// ---- list edits ----------------------------------------------------------------------

// editList applies an edit to the list the TV shows and queues it for
// the transfer daemon.
func (d *Daemon) editList(act tv.Action) {
	titles := slices.Clone(d.list)
	var ids string
	rank := 0
	switch a := act.(type) {
	case tv.AddToList:
		ids, rank = a.Title, a.Rank
	case tv.Move:
		ids, rank = a.Title, a.Rank
	case tv.Remove:
		ids = a.Title
	}
	id, err := media.ParseID(ids)
	if err != nil {
		d.log.Warn("list edit for a title with a bad ID", "title", ids, "err", err)
		return
	}
	if i := slices.Index(titles, id); i >= 0 {
		titles = slices.Delete(titles, i, i+1)
	}
	if _, remove := act.(tv.Remove); !remove {
		if rank <= 0 || rank > len(titles) {
			titles = append(titles, id)
		} else {
			titles = slices.Insert(titles, rank-1, id)
		}
	}
	if len(titles) > api.MaxTitles {
		d.app.Notify(fmt.Sprintf("My List holds at most %d titles.", api.MaxTitles))
		d.setData()
		return
	}
	d.list = titles
	d.listEdits++
	d.setData()
	select {
	case d.listQ <- titles:
	default:
		// Full: the writer is far behind. Only the newest list matters.
		select {
		case <-d.listQ:
			d.listEdits--
		default:
		}
		d.listQ <- titles
	}
}

// listWriter sends list edits one at a time, in order, skipping to the
// newest when several wait.
func (d *Daemon) listWriter(ctx context.Context) {
	for {
		var titles []media.ID
		select {
		case titles = <-d.listQ:
		case <-ctx.Done():
			return
		}
		n := 1
	drain:
		for {
			select {
			case titles = <-d.listQ:
				n++
			default:
				break drain
			}
		}
		pl, err := d.c.SetList(ctx, titles)
		d.post(ctx, func() {
			d.listEdits -= n
			if err != nil {
				d.log.Warn("list edit", "err", err)
				d.app.Notify("My List could not be changed: " + d.explain(err))
				// Back to what the transfer daemon holds, at its next
				// reading.
			}
			if d.listEdits <= 0 {
				d.listEdits = 0
				if err == nil {
					d.list = slices.Clone(pl.Titles)
				}
			}
			d.setData()
		})
	}
}
