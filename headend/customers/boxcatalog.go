package customers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/boxswarm/boxswarm/api"
)

// endOfTime stands for "whenever published": a box is sent titles ahead of
// their publish time and shows each from then on.
var endOfTime = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// BoxCatalog returns a page of the titles the box's viewer may see there:
// the account's catalogs, allowed in the box's region, sorted by title.
// Unlike Search it includes titles not yet published, so that a box can
// hold them until their publish time without being told again.
func (s *Service) BoxCatalog(ctx context.Context, device api.BoxID, offset, limit int) (Page, error) {
	var tq TitleQuery
	err := s.store.View(ctx, func(tx ReadTx) error {
		b, err := tx.BoxByDevice(device)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: no account has box %s", ErrNotYourBox, device)
		}
		if err != nil {
			return err
		}
		a, err := readAccount(tx, b.Account)
		if err != nil {
			return err
		}
		tq = TitleQuery{Query: Query{Sort: SortTitle, Offset: offset, Limit: limit}.Normalized(),
			Catalogs: a.Catalogs, Region: b.Region, Now: endOfTime}
		return nil
	})
	if err != nil {
		return Page{}, fmt.Errorf("customers: catalog of box %s: %w", device, err)
	}
	p, err := s.store.SearchTitles(ctx, tq)
	if err != nil {
		return Page{}, fmt.Errorf("customers: catalog of box %s: %w", device, err)
	}
	return p, nil
}

// Audience returns the devices, of those given, whose viewer may see t on
// that box: subscribed to its catalog, and the box in a region it is
// allowed in. Devices on no account are left out. It reads one snapshot.
func (s *Service) Audience(ctx context.Context, t Title, devices []api.BoxID) ([]api.BoxID, error) {
	var out []api.BoxID
	err := s.store.View(ctx, func(tx ReadTx) error {
		out = out[:0]
		subscribed := map[AccountID]bool{}
		for _, d := range devices {
			b, err := tx.BoxByDevice(d)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			sub, ok := subscribed[b.Account]
			if !ok {
				a, err := readAccount(tx, b.Account)
				if err != nil {
					return err
				}
				sub = slices.Contains(a.Catalogs, t.Catalog)
				subscribed[b.Account] = sub
			}
			if sub && t.AllowedIn(b.Region) {
				out = append(out, d)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("customers: audience of %s: %w", t.Media, err)
	}
	return out, nil
}
