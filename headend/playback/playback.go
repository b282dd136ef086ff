// Package playback answers a box's two requests on the way to playing a
// title: a media pass (api.PassRequest), then the title's content key
// against that pass (api.KeyRequest). It joins customer management, which
// decides whether the box may play, the pass issuer, which puts that
// decision in a signed pass, and the key vault, which releases the key.
//
// The flow: the box asks for a pass. If an open rental or a purchase of the
// title covers the box, it gets a pass at once. If not, a request without
// Confirm is answered with the price (renting is the default way to play;
// buying when the title cannot be rented) and a reason saying the viewer
// must confirm; nothing is charged. The same request with Confirm rents (or
// buys) at that price and gets a pass. The box then presents the pass for
// the key, which the vault wraps to the box's identity key.
//
// Guarantees:
//
//   - The box ID and identity key are always the caller's: what the
//     session authenticated (the device certificate), never anything in
//     the message. A pass names both, so it is worthless to another box.
//
//   - No pass is issued without customers.Service.Play or Confirm applying
//     every rule (account active, box on the account, title published and
//     allowed in the box's region, paid for) at the time of the request.
//
//   - Nothing is charged without Confirm, and a play already covered (an
//     open rental, a title bought) is never charged again: each renewed
//     play inside a rental window gets a new pass for free.
//
//   - A pass's play window ends when the rental does; for a title bought
//     it is PassWindow from the request. The vault caps the released key's
//     life further (vault.DefaultMaxKeyLifetime).
//
//   - Every refusal is answered twice: a response whose Reason a viewer can
//     read, and an error wrapping the sentinel of the package that refused
//     (customers, pass or vault), so callers can log and count by
//     errors.Is. A key response's Reason starts with the vault's outcome
//     code ("replayed: …"), which tells the box whether a new pass helps.
//
//   - A confirmation names the price the viewer saw (api.PassRequest.Price,
//     as a response showed it). If the price has changed since, nothing is
//     charged: the answer carries the new price and the refusal wraps
//     customers.ErrPriceChanged.
package playback

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/pass"
	"github.com/boxswarm/boxswarm/headend/vault"
	"github.com/boxswarm/boxswarm/media"
)

// DefaultPassWindow is the play window of a pass for a title bought,
// unless configured.
const DefaultPassWindow = 4 * time.Hour

// Config configures a Service. All but PassWindow, Now and Log are
// required.
type Config struct {
	Customers *customers.Service
	Issuer    *pass.Issuer
	Vault     *vault.Vault
	// PassWindow is how long a pass for a title bought lets the box play
	// it; DefaultPassWindow if zero. A rental's pass lasts until the
	// rental ends.
	PassWindow time.Duration
	// Now is the clock; time.Now if nil. Give Customers, Issuer and Vault
	// the same one.
	Now func() time.Time
	Log *slog.Logger
}

// Service answers pass and key requests. It is safe for concurrent use.
type Service struct {
	cust   *customers.Service
	issuer *pass.Issuer
	vault  *vault.Vault
	window time.Duration
	now    func() time.Time
	log    *slog.Logger
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Customers == nil || cfg.Issuer == nil || cfg.Vault == nil {
		return nil, errors.New("playback: Customers, Issuer and Vault are required")
	}
	s := &Service{cust: cfg.Customers, issuer: cfg.Issuer, vault: cfg.Vault,
		window: cfg.PassWindow, now: cfg.Now, log: cfg.Log}
	if s.window == 0 {
		s.window = DefaultPassWindow
	}
	// The pass records whole seconds; a shorter window would end as it
	// opens.
	if s.window < time.Second {
		return nil, fmt.Errorf("playback: pass window %s is under a second", s.window)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s, nil
}

// Pass answers a box's request for a media pass. box and boxKey are the
// box the session authenticated, never taken from the request.
//
// On success the response carries the pass. Without a purchase covering
// the box and without req.Confirm, the response carries the price and a
// reason asking for confirmation, and the error wraps
// customers.ErrNotConfirmed (and customers.ErrRentalOver when an earlier
// rental has ended, else customers.ErrNotPurchased). Every other refusal
// wraps the customers sentinel: ErrSuspended, ErrRegionBlocked,
// ErrNotYourBox, ErrUnknownTitle, ErrNotPublished, ErrNotSubscribed,
// ErrNotForSale, ErrPaymentDeclined, ErrPaymentFailed and so on.
func (s *Service) Pass(ctx context.Context, box api.BoxID, boxKey ed25519.PublicKey, req api.PassRequest) (api.PassResponse, error) {
	resp := api.PassResponse{Title: req.Title}
	raw, p, err := s.pass(ctx, box, boxKey, req, &resp)
	if err != nil {
		if resp.Reason == "" {
			resp.Reason = passReason(err)
		}
		s.log.Info("media pass refused", "box", box, "title", req.Title, "confirm", req.Confirm, "price", resp.Price, "err", err)
		return resp, fmt.Errorf("playback: pass for title %s, box %s: %w", req.Title, box, err)
	}
	resp.Pass = raw
	s.log.Info("media pass issued", "box", box, "title", req.Title, "account", p.Account, "pass", p.ID,
		"not_after", p.NotAfter, "expires", p.Expires)
	return resp, nil
}

func (s *Service) pass(ctx context.Context, box api.BoxID, boxKey ed25519.PublicKey, req api.PassRequest, resp *api.PassResponse) ([]byte, *pass.Pass, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	g, err := s.grant(ctx, box, req, resp)
	if err != nil {
		return nil, nil, err
	}
	notAfter := g.Expires
	if g.Kind == customers.KindBuy {
		notAfter = s.now().Add(s.window)
	}
	raw, p, err := s.issuer.Issue(pass.Grant{Box: box, BoxKey: boxKey, Title: req.Title, NotAfter: notAfter, Account: string(g.Account)})
	if err != nil {
		return nil, nil, fmt.Errorf("issue for purchase %s: %w", g.ID, err)
	}
	return raw, p, nil
}

// grant returns the purchase that lets box play the title: one that covers
// it already, or one confirmed now.
func (s *Service) grant(ctx context.Context, box api.BoxID, req api.PassRequest, resp *api.PassResponse) (customers.Purchase, error) {
	g, playErr := s.cust.Play(ctx, box, req.Title)
	if playErr == nil {
		return g, nil
	}
	over := errors.Is(playErr, customers.ErrRentalOver)
	if !over && !errors.Is(playErr, customers.ErrNotPurchased) {
		return customers.Purchase{}, playErr
	}
	b, err := s.cust.DeviceBox(ctx, box)
	if err != nil {
		return customers.Purchase{}, err
	}
	q, err := s.quote(ctx, b, req.Title)
	if err != nil {
		return customers.Purchase{}, err
	}
	if q.Covered != nil { // bought or rented since Play looked
		return *q.Covered, nil
	}
	resp.Price = q.Price.String()
	resp.Offer = api.OfferRent
	if q.Kind == customers.KindBuy {
		resp.Offer = api.OfferBuy
	} else {
		resp.WindowSeconds = int64(q.Window / time.Second)
	}
	if !req.Confirm {
		resp.Reason = confirmReason(q, over)
		return customers.Purchase{}, fmt.Errorf("%w: %w", playErr, customers.ErrNotConfirmed)
	}
	if req.Price != resp.Price {
		resp.Reason = fmt.Sprintf("The price is now %s; confirm again to pay it.", resp.Price)
		return customers.Purchase{}, fmt.Errorf("confirmed %q, price now %s: %w", req.Price, resp.Price, customers.ErrPriceChanged)
	}
	return s.cust.Confirm(ctx, q.Order, q.Price)
}

// quote prices a rental of the title for the box, or its purchase when it
// cannot be rented.
func (s *Service) quote(ctx context.Context, b customers.Box, title media.ID) (customers.Quote, error) {
	o := customers.Order{Account: b.Account, Box: b.Ref, Title: title, Kind: customers.KindRent}
	q, err := s.cust.Quote(ctx, o)
	if errors.Is(err, customers.ErrNotForSale) {
		o.Kind = customers.KindBuy
		q, err = s.cust.Quote(ctx, o)
	}
	return q, err
}

// Key presents a pass to the vault for the title's content key wrapped to
// box, which with boxKey is the box the session authenticated. Refusals
// are vault.Release's, each with its error (vault.ErrNoPass,
// vault.ErrWrongBox, vault.ErrReplayed, pass.ErrExpired,
// pass.ErrBadSignature…); the Reason is the vault's outcome code followed
// by a sentence for the viewer.
func (s *Service) Key(ctx context.Context, box api.BoxID, boxKey ed25519.PublicKey, req api.KeyRequest) (api.KeyResponse, error) {
	resp, err := s.vault.Release(ctx, box, boxKey, req.Pass)
	if err != nil {
		resp.Reason = keyReason(resp.Reason, err)
		return resp, fmt.Errorf("playback: key for box %s: %w", box, err)
	}
	return resp, nil
}
