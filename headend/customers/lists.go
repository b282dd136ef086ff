package customers

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/media"
)

// A box's priority list is edited in two places: on the web (here) and on
// the TV (the box sends its whole list to the head-end). The rule that
// keeps them in step: every edit here stores the list with the version
// held plus one; a list from the box replaces the one held only if its
// version is higher. So the last writer wins by version, and when both
// sides edited the same version, the head-end's edit (which reached the
// store first) stays and the box is sent it.
//
// The edits are relative (add at the end, add before a title, move before
// a title, remove), so an edit from a page showing an older version still
// means what the viewer meant.

// MaxListTitles bounds a list, as the box protocol does.
const MaxListTitles = api.MaxTitles

// insertBefore returns titles with id inserted before the title before,
// or at the end if before is zero.
func insertBefore(titles []media.ID, id, before media.ID) ([]media.ID, error) {
	if before == (media.ID{}) {
		return append(slices.Clip(titles), id), nil
	}
	i := slices.Index(titles, before)
	if i < 0 {
		return nil, fmt.Errorf("%s (to go before): %w", before, ErrNotListed)
	}
	return slices.Insert(slices.Clip(titles), i, id), nil
}

// listAdd adds id before the title before (at the end if zero).
func listAdd(titles []media.ID, id, before media.ID) ([]media.ID, error) {
	if slices.Contains(titles, id) {
		return nil, fmt.Errorf("%s: %w", id, ErrAlreadyListed)
	}
	if len(titles) >= MaxListTitles {
		return nil, fmt.Errorf("%d titles: %w", len(titles), ErrListFull)
	}
	return insertBefore(titles, id, before)
}

// listMove moves id to just before the title before (to the end if zero).
func listMove(titles []media.ID, id, before media.ID) ([]media.ID, error) {
	if id == before {
		if !slices.Contains(titles, id) {
			return nil, fmt.Errorf("%s: %w", id, ErrNotListed)
		}
		return titles, nil
	}
	rest, err := listRemove(titles, id)
	if err != nil {
		return nil, err
	}
	return insertBefore(rest, id, before)
}

// listRemove removes id.
func listRemove(titles []media.ID, id media.ID) ([]media.ID, error) {
	i := slices.Index(titles, id)
	if i < 0 {
		return nil, fmt.Errorf("%s: %w", id, ErrNotListed)
	}
	return slices.Delete(slices.Clone(titles), i, i+1), nil
}

// List returns a box's priority list (empty, version 0, if it has none).
func (s *Service) List(ctx context.Context, account AccountID, box BoxRef) (List, error) {
	var l List
	err := s.store.View(ctx, func(tx ReadTx) error {
		if _, err := ownBox(tx, account, box); err != nil {
			return err
		}
		var err error
		l, err = readList(tx, box)
		return err
	})
	if err != nil {
		return List{}, fmt.Errorf("customers: list of box %s: %w", box, err)
	}
	return l, nil
}

func readList(tx ReadTx, box BoxRef) (List, error) {
	l, err := tx.List(box)
	if errors.Is(err, ErrNotFound) {
		return List{Box: box}, nil
	}
	return l, err
}

// ListAdd adds a title at the end of a box's list. The title must be one
// the account may have on that box (subscribed, published, allowed in the
// box's region).
func (s *Service) ListAdd(ctx context.Context, account AccountID, box BoxRef, title media.ID) (List, error) {
	return s.ListAddBefore(ctx, account, box, title, media.ID{})
}

// ListAddBefore adds a title just before another on a box's list (at the
// end if before is zero).
func (s *Service) ListAddBefore(ctx context.Context, account AccountID, box BoxRef, title, before media.ID) (List, error) {
	return s.editList(ctx, account, box, "add", func(tx ReadTx, a Account, b Box, titles []media.ID) ([]media.ID, error) {
		if _, err := visibleTitle(tx, a, b.Region, title, s.clock()); err != nil {
			return nil, err
		}
		return listAdd(titles, title, before)
	})
}

// ListMove moves a title to just before another (to the end if before is
// zero).
func (s *Service) ListMove(ctx context.Context, account AccountID, box BoxRef, title, before media.ID) (List, error) {
	return s.editList(ctx, account, box, "move", func(_ ReadTx, _ Account, _ Box, titles []media.ID) ([]media.ID, error) {
		return listMove(titles, title, before)
	})
}

// ListRemove removes a title from a box's list.
func (s *Service) ListRemove(ctx context.Context, account AccountID, box BoxRef, title media.ID) (List, error) {
	return s.editList(ctx, account, box, "remove", func(_ ReadTx, _ Account, _ Box, titles []media.ID) ([]media.ID, error) {
		return listRemove(titles, title)
	})
}

// editList applies one edit in one transaction and, if the list changed,
// stores it with the next version and tells the scheduler.
func (s *Service) editList(ctx context.Context, account AccountID, box BoxRef, what string,
	edit func(ReadTx, Account, Box, []media.ID) ([]media.ID, error)) (List, error) {
	var l List
	var b Box
	changed := false
	err := s.store.Update(ctx, func(tx Tx) error {
		a, err := activeAccount(tx, account)
		if err != nil {
			return err
		}
		if b, err = ownBox(tx, account, box); err != nil {
			return err
		}
		if l, err = readList(tx, box); err != nil {
			return err
		}
		titles, err := edit(tx, a, b, l.Titles)
		if err != nil {
			return err
		}
		if changed = !slices.Equal(titles, l.Titles); !changed {
			return nil
		}
		l.Titles, l.Version, l.Updated = titles, l.Version+1, s.clock()
		return tx.PutList(l)
	})
	if err != nil {
		return List{}, fmt.Errorf("customers: list of box %s: %s: %w", box, what, err)
	}
	if changed {
		s.pushList(ctx, b, l)
	}
	return l, nil
}

// pushList tells the scheduler of a list, if the box has activated.
func (s *Service) pushList(ctx context.Context, b Box, l List) {
	if s.lists == nil || b.Device == (api.BoxID{}) {
		return
	}
	if err := s.lists.SetPriorityList(ctx, b.Device, slices.Clone(l.Titles), l.Version); err != nil {
		s.log.Warn("priority list not sent to the scheduler", "box", b.Device, "version", l.Version, "err", err)
	}
}

// ListForScheduler returns a box's list as the scheduler takes it, with
// the box's ID: ErrNotActivated if the box has not activated yet.
func (s *Service) ListForScheduler(ctx context.Context, box BoxRef) (api.BoxID, api.PriorityList, error) {
	var b Box
	var l List
	err := s.store.View(ctx, func(tx ReadTx) error {
		var err error
		if b, err = tx.Box(box); err != nil {
			return err
		}
		l, err = readList(tx, box)
		return err
	})
	if err == nil && b.Device == (api.BoxID{}) {
		err = ErrNotActivated
	}
	if err != nil {
		return api.BoxID{}, api.PriorityList{}, fmt.Errorf("customers: list of box %s: %w", box, err)
	}
	return b.Device, ToPriorityList(l), nil
}

// ToPriorityList converts a list to the box protocol's message.
func ToPriorityList(l List) api.PriorityList {
	return api.PriorityList{Titles: slices.Clone(l.Titles), Version: l.Version}
}

// ListFromBox takes a list the box sent. It replaces the one held if its
// version is higher (accepted true); otherwise the list held is returned
// with accepted false, and the box should be sent it. Every title must be
// known; whether the viewer may play them is checked at purchase.
func (s *Service) ListFromBox(ctx context.Context, device api.BoxID, pl api.PriorityList) (l List, accepted bool, err error) {
	if err := pl.Validate(); err != nil {
		return List{}, false, fmt.Errorf("customers: list from box %s: %w: %w", device, ErrInvalid, err)
	}
	err = s.store.Update(ctx, func(tx Tx) error {
		accepted = false
		b, err := deviceBox(tx, device)
		if err != nil {
			return err
		}
		if _, err := activeAccount(tx, b.Account); err != nil {
			return err
		}
		if l, err = readList(tx, b.Ref); err != nil {
			return err
		}
		if pl.Version <= l.Version {
			return nil
		}
		for _, id := range pl.Titles {
			if _, err := tx.Title(id); errors.Is(err, ErrNotFound) {
				return fmt.Errorf("%w %s", ErrUnknownTitle, id)
			} else if err != nil {
				return err
			}
		}
		l = List{Box: b.Ref, Titles: slices.Clone(pl.Titles), Version: pl.Version, Updated: s.clock()}
		accepted = true
		return tx.PutList(l)
	})
	if err != nil {
		return List{}, false, fmt.Errorf("customers: list from box %s: %w", device, err)
	}
	return l, accepted, nil
}
