// Package boxlink keeps customer management and the scheduler in step about
// viewers' boxes. It sits in the gateway's chain of handlers, in front of
// the scheduler, and does four things:
//
//   - Activation: when the scheduler accepts a box's activation code, the
//     customer record of the box learns its device ID, and the box is sent
//     its catalog and its priority list.
//   - Priority lists edited on the TV: a list a box sends goes to customer
//     management first. The higher version wins; when the web's edit is
//     newer, the box is sent that list instead of the scheduler taking its
//     own.
//   - Catalog replication: a title put into a catalog (by the import tool,
//     through the operator API) goes to every activated box whose viewer
//     may see it, ahead of its publish time, which travels with it. A box
//     gets its whole catalog in bulk when it activates.
//   - Progress for the web's My List, from what the scheduler knows of the
//     box's holdings and transfers.
//
// Lists edited on the web reach the scheduler without this package:
// customers.Config.Lists is the scheduler.
package boxlink

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/gateway"
	"github.com/boxswarm/boxswarm/headend/scheduler"
	"github.com/boxswarm/boxswarm/headend/web"
	"github.com/boxswarm/boxswarm/media"
)

// Scheduler is what the link needs of *scheduler.Scheduler.
type Scheduler interface {
	SetPriorityList(ctx context.Context, box api.BoxID, titles []media.ID, version uint64) error
	TellMany(ctx context.Context, boxes []api.BoxID, body api.Body) (int, error)
	AccountBoxes(ctx context.Context) ([]scheduler.AccountBox, error)
	Progress(ctx context.Context, box api.BoxID, titles []media.ID) (map[media.ID]scheduler.TitleProgress, error)
}

// Link is a gateway.Handler that wraps the next one (the scheduler, or
// playback.Sessions in front of it). Make one with New.
type Link struct {
	gateway.Handler
	cust  *customers.Service
	sched Scheduler
	log   *slog.Logger
	retry time.Duration
}

// New returns a Link in front of next.
func New(next gateway.Handler, cust *customers.Service, sched Scheduler, log *slog.Logger) *Link {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Link{Handler: next, cust: cust, sched: sched, log: log, retry: time.Second}
}

// activationTries bounds how often the customer record of an activated
// box is retried before the error is logged for the operator.
const activationTries = 6

// Activate lets the next handler activate the box, then records the
// device on the customer account and sends the box its catalog and list.
// The scheduler has consumed the code by then, so a customer store that
// fails is retried rather than failing the box's activation, which could
// not be repeated with the same code.
func (l *Link) Activate(ctx context.Context, code string, pub ed25519.PublicKey,
	issue func(api.BoxID) ([]byte, error)) (api.BoxID, []byte, error) {
	id, der, err := l.Handler.Activate(ctx, code, pub, issue)
	if err != nil {
		return id, der, err
	}
	err = l.recordActivation(ctx, code, id)
	switch {
	case errors.Is(err, customers.ErrNotFound):
		// A code the operator made (headend code), not a viewer's: the box
		// has no customer account and so no catalog.
		return id, der, nil
	case err != nil:
		l.log.Error("activated box not recorded on its account: its viewer cannot see it on the web until an operator fixes it",
			"box", id, "code", code, "err", err)
		return id, der, nil
	}
	if err := l.sendCatalog(ctx, id); err != nil {
		l.log.Warn("catalog for a new box", "box", id, "err", err)
	}
	if err := l.sendList(ctx, id); err != nil {
		l.log.Warn("priority list for a new box", "box", id, "err", err)
	}
	return id, der, nil
}

// recordActivation tells customer management which device used code,
// retrying what may be a passing failure of its store.
func (l *Link) recordActivation(ctx context.Context, code string, id api.BoxID) error {
	wait := l.retry
	for try := 1; ; try++ {
		_, err := l.cust.BoxActivated(ctx, code, id)
		final := errors.Is(err, customers.ErrNotFound) || errors.Is(err, customers.ErrExists) || errors.Is(err, customers.ErrInvalid)
		if err == nil || final || try == activationTries {
			return err
		}
		l.log.Warn("recording an activated box: retrying", "box", id, "try", try, "err", err)
		select {
		case <-time.After(wait):
			wait *= 2
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %w)", err, ctx.Err())
		}
	}
}

// Deliver takes priority lists to customer management first, and passes
// every message on.
func (l *Link) Deliver(ctx context.Context, box api.BoxID, seq uint64, body api.Body) error {
	pl, ok := body.(api.PriorityList)
	if !ok {
		return l.Handler.Deliver(ctx, box, seq, body)
	}
	held, accepted, err := l.cust.ListFromBox(ctx, box, pl)
	switch {
	case errors.Is(err, customers.ErrNotYourBox):
		return l.Handler.Deliver(ctx, box, seq, body) // not a viewer's box
	case err != nil:
		return err
	case accepted:
		return l.Handler.Deliver(ctx, box, seq, body)
	}
	// The web's list is newer: the box gets it. The scheduler has it
	// already unless telling it failed when the web changed it.
	cur := customers.ToPriorityList(held)
	err = l.sched.SetPriorityList(ctx, box, cur.Titles, cur.Version)
	if errors.Is(err, scheduler.ErrStaleList) {
		_, err = l.sched.TellMany(ctx, []api.BoxID{box}, cur)
	}
	return err
}

// PutCatalog adds or renames a catalog. A catalog's titles reach boxes as
// they are put.
func (l *Link) PutCatalog(ctx context.Context, c customers.Catalog) error {
	return l.cust.PutCatalog(ctx, c)
}

// PutTitle adds or changes a title in customer management and sends it to
// every box that may show it. Putting the same title again sends it
// again, so an operator can repeat a publication that failed half-way.
func (l *Link) PutTitle(ctx context.Context, t customers.Title) error {
	if err := l.cust.PutTitle(ctx, t); err != nil {
		return err
	}
	boxes, err := l.sched.AccountBoxes(ctx)
	if err != nil {
		return fmt.Errorf("replicate title %s: %w", t.Media, err)
	}
	ids := make([]api.BoxID, len(boxes))
	for i, b := range boxes {
		ids[i] = b.Box
	}
	audience, err := l.cust.Audience(ctx, t, ids)
	if err != nil {
		return fmt.Errorf("replicate title %s: %w", t.Media, err)
	}
	n, err := l.sched.TellMany(ctx, audience, api.CatalogUpdate{Items: []api.CatalogItem{CatalogItem(t)}})
	if err != nil {
		return fmt.Errorf("replicate title %s: %w", t.Media, err)
	}
	l.log.Info("title replicated", "title", t.Media, "name", t.Name, "boxes", n, "publish_at", t.PublishAt)
	return nil
}

// sendCatalog sends the box its whole catalog: the first update replaces
// what the box held, the rest add to it.
func (l *Link) sendCatalog(ctx context.Context, box api.BoxID) error {
	first := true
	for off := 0; ; {
		p, err := l.cust.BoxCatalog(ctx, box, off, api.MaxCatalogItems)
		if err != nil {
			return err
		}
		u := api.CatalogUpdate{Full: first, Items: make([]api.CatalogItem, 0, len(p.Titles))}
		for _, t := range p.Titles {
			u.Items = append(u.Items, CatalogItem(t))
		}
		if len(u.Items) > 0 || first {
			if _, err := l.sched.TellMany(ctx, []api.BoxID{box}, u); err != nil {
				return err
			}
		}
		first = false
		off += len(p.Titles)
		if len(p.Titles) == 0 || off >= p.Total {
			return nil
		}
	}
}

// sendList sends the box the list its viewer may have made on the web
// before the box activated.
func (l *Link) sendList(ctx context.Context, box api.BoxID) error {
	b, err := l.cust.DeviceBox(ctx, box)
	if err != nil {
		return err
	}
	_, pl, err := l.cust.ListForScheduler(ctx, b.Ref)
	if err != nil || len(pl.Titles) == 0 && pl.Version == 0 {
		return err
	}
	return l.sched.SetPriorityList(ctx, box, pl.Titles, pl.Version)
}

// CatalogItem is what a box is told of a title.
func CatalogItem(t customers.Title) api.CatalogItem {
	return api.CatalogItem{Title: t.Media, Name: t.Name, Year: t.Year, Genre: t.Genre, Rating: t.Rating,
		PublishAt: customers.StoreTime(t.PublishAt)}
}

// Progress implements web.Progress from the scheduler's view of the box.
func (l *Link) Progress(ctx context.Context, box customers.Box, titles []media.ID) (map[media.ID]web.TitleProgress, error) {
	if box.Device == (api.BoxID{}) {
		return nil, nil
	}
	ps, err := l.sched.Progress(ctx, box.Device, titles)
	if errors.Is(err, scheduler.ErrUnknownBox) {
		return nil, nil // activated on the customer side, not yet known to the scheduler
	}
	if err != nil {
		return nil, err
	}
	out := make(map[media.ID]web.TitleProgress, len(ps))
	for id, p := range ps {
		st := web.Downloading
		if p.Complete {
			st = web.Downloaded
		}
		out[id] = web.TitleProgress{State: st, Percent: p.Percent()}
	}
	return out, nil
}
