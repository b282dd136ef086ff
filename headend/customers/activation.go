package customers

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"time"

	"github.com/boxswarm/boxswarm/api"
)

// newCode returns a random activation code: 80 bits in four groups of
// four letters and digits, easy to read out over the phone (the format of
// the admin API's codes).
func newCode() string {
	var b [10]byte
	_, _ = rand.Read(b[:]) // never fails
	s := base32.StdEncoding.EncodeToString(b[:])
	return s[0:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16]
}

// issueBox registers a new activation code with the scheduler and returns
// the box it is for, not yet stored.
func (s *Service) issueBox(ctx context.Context, account AccountID, supplier, region string, now time.Time) (Box, error) {
	b := Box{Ref: BoxRef(newID()), Account: account, Code: newCode(), Supplier: supplier, Region: region, Added: now}
	if err := s.act.AddActivationCode(ctx, b.Code, string(account)); err != nil {
		return Box{}, fmt.Errorf("register activation code: %w", err)
	}
	return b, nil
}

// AddBox issues an activation code for another box on an account.
// Region is where the box will be installed (the account's region if
// empty); supplier is the retailer or operator that supplies it.
func (s *Service) AddBox(ctx context.Context, account AccountID, supplier, region string) (Box, error) {
	var a Account
	err := s.store.View(ctx, func(tx ReadTx) error {
		var err error
		a, err = activeAccount(tx, account)
		return err
	})
	if err != nil {
		return Box{}, fmt.Errorf("customers: add box to %s: %w", account, err)
	}
	if region == "" {
		region = a.Address.Region
	}
	if err := errors.Join(checkField("supplier", supplier, 1, maxText), checkRegion(region)); err != nil {
		return Box{}, fmt.Errorf("customers: add box to %s: %w", account, err)
	}
	b, err := s.issueBox(ctx, account, supplier, region, s.clock())
	if err != nil {
		return Box{}, fmt.Errorf("customers: add box to %s: %w", account, err)
	}
	if err := s.store.Update(ctx, func(tx Tx) error {
		if _, err := readAccount(tx, account); err != nil {
			return err
		}
		return tx.PutBox(b)
	}); err != nil {
		return Box{}, fmt.Errorf("customers: add box to %s: %w", account, err)
	}
	s.log.Info("box added", "account", account, "box", b.Ref, "supplier", supplier)
	return b, nil
}

// Boxes returns an account's boxes, oldest first.
func (s *Service) Boxes(ctx context.Context, account AccountID) ([]Box, error) {
	var bs []Box
	err := s.store.View(ctx, func(tx ReadTx) error {
		var err error
		bs, err = tx.BoxesOf(account)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("customers: boxes of %s: %w", account, err)
	}
	return bs, nil
}

// BoxActivated records that the box with an activation code has activated
// as device: the head-end calls it when the scheduler accepts the code.
// Calling it again with the same device changes nothing.
func (s *Service) BoxActivated(ctx context.Context, code string, device api.BoxID) (Box, error) {
	if device == (api.BoxID{}) {
		return Box{}, fmt.Errorf("customers: activation: %w: zero box ID", ErrInvalid)
	}
	var b Box
	err := s.store.Update(ctx, func(tx Tx) error {
		var err error
		b, err = tx.BoxByCode(code)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: no box has that activation code", ErrNotFound)
		}
		if err != nil {
			return err
		}
		switch b.Device {
		case device:
			return nil
		case api.BoxID{}:
		default:
			return fmt.Errorf("%w: the code was used by box %s", ErrExists, b.Device)
		}
		b.Device, b.Activated = device, s.clock()
		return tx.PutBox(b)
	})
	if err != nil {
		return Box{}, fmt.Errorf("customers: activation of box %s: %w", device, err)
	}
	return b, nil
}

// ownBox reads a box of an account: ErrNotYourBox if there is no such box
// or it is another account's (the two are not told apart).
func ownBox(tx ReadTx, account AccountID, ref BoxRef) (Box, error) {
	b, err := tx.Box(ref)
	if errors.Is(err, ErrNotFound) || err == nil && b.Account != account {
		return Box{}, fmt.Errorf("box %s: %w", ref, ErrNotYourBox)
	}
	return b, err
}

// deviceBox reads the box that activated as device.
// DeviceBox returns the account's box that activated as device
// (ErrNotYourBox if none did).
func (s *Service) DeviceBox(ctx context.Context, device api.BoxID) (Box, error) {
	var b Box
	err := s.store.View(ctx, func(tx ReadTx) error {
		var err error
		b, err = deviceBox(tx, device)
		return err
	})
	return b, err
}

func deviceBox(tx ReadTx, device api.BoxID) (Box, error) {
	b, err := tx.BoxByDevice(device)
	if errors.Is(err, ErrNotFound) {
		return Box{}, fmt.Errorf("box %s: %w", device, ErrNotYourBox)
	}
	return b, err
}
