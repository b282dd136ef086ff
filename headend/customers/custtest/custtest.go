// Package custtest holds stand-ins for what customer management talks to,
// for tests and demos: a payment provider that takes no real cards, an
// activator and a list sink that record what they are given, and a clock
// that moves only when told.
package custtest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/boxswarm/boxswarm/api"
	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/media"
)

// Test payment tokens. Payments decides by prefix, so tokens can be made
// unique per test ("tok_ok_alice").
const (
	TokenOK            = "tok_ok"            // authorizes and charges
	TokenDeclined      = "tok_declined"      // declined by Authorize and Charge
	TokenCaptureFails  = "tok_capture_fails" // authorizes; Charge fails (not a decline)
	TokenCaptureDenied = "tok_capture_deny"  // authorizes; Charge is declined
)

// ErrProviderDown is what Charge fails with for TokenCaptureFails.
var ErrProviderDown = errors.New("test payment provider: capture timed out")

// Charge is one charge Payments took.
type Charge struct {
	Token  string
	Amount customers.Money
	Key    string
	Ref    string
}

// Payments is a customers.PaymentProvider that keeps its charges in
// memory. Charges are idempotent by key, as a real provider's are.
type Payments struct {
	mu         sync.Mutex
	charges    []Charge
	byKey      map[string]int
	authorized int
	attempts   int
}

var _ customers.PaymentProvider = (*Payments)(nil)

// NewPayments returns a provider with no charges.
func NewPayments() *Payments { return &Payments{byKey: map[string]int{}} }

// Authorize accepts every token but declined ones.
func (p *Payments) Authorize(ctx context.Context, token string, amount customers.Money) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.authorized++
	switch {
	case strings.HasPrefix(token, TokenDeclined):
		return fmt.Errorf("test payment provider: token %q: %w", token, customers.ErrPaymentDeclined)
	case !strings.HasPrefix(token, "tok_"):
		return fmt.Errorf("test payment provider: unknown token %q: %w", token, customers.ErrPaymentDeclined)
	case amount.Amount < 0:
		return fmt.Errorf("test payment provider: negative amount %v", amount)
	}
	return nil
}

// Charge takes amount once per key.
func (p *Payments) Charge(ctx context.Context, token string, amount customers.Money, key string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.attempts++
	if i, ok := p.byKey[key]; ok {
		c := p.charges[i]
		if c.Amount != amount || c.Token != token {
			return "", fmt.Errorf("test payment provider: key %q reused for another charge", key)
		}
		return c.Ref, nil
	}
	switch {
	case strings.HasPrefix(token, TokenCaptureFails):
		return "", ErrProviderDown
	case strings.HasPrefix(token, TokenCaptureDenied), strings.HasPrefix(token, TokenDeclined):
		return "", fmt.Errorf("test payment provider: token %q: %w", token, customers.ErrPaymentDeclined)
	case !strings.HasPrefix(token, "tok_"):
		return "", fmt.Errorf("test payment provider: unknown token %q: %w", token, customers.ErrPaymentDeclined)
	case amount.Amount <= 0:
		return "", fmt.Errorf("test payment provider: amount %v", amount)
	}
	c := Charge{Token: token, Amount: amount, Key: key, Ref: fmt.Sprintf("ch_%d", len(p.charges)+1)}
	p.byKey[key] = len(p.charges)
	p.charges = append(p.charges, c)
	return c.Ref, nil
}

// Charges returns the charges taken, in order.
func (p *Payments) Charges() []Charge {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.charges)
}

// Attempts returns how many times Charge was called.
func (p *Payments) Attempts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.attempts
}

// Activator is a customers.Activator that keeps codes in memory.
type Activator struct {
	mu    sync.Mutex
	codes map[string]string
	fail  error
}

var _ customers.Activator = (*Activator)(nil)

// NewActivator returns an activator with no codes.
func NewActivator() *Activator { return &Activator{codes: map[string]string{}} }

// AddActivationCode records a code, refusing one it has.
func (a *Activator) AddActivationCode(ctx context.Context, code, account string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail != nil {
		return a.fail
	}
	if _, ok := a.codes[code]; ok {
		return fmt.Errorf("test activator: code exists")
	}
	a.codes[code] = account
	return nil
}

// FailWith makes every later AddActivationCode fail with err (nil: none).
func (a *Activator) FailWith(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail = err
}

// Account returns the account a code was registered for.
func (a *Activator) Account(code string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	acct, ok := a.codes[code]
	return acct, ok
}

// Len returns how many codes are registered.
func (a *Activator) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.codes)
}

// SentList is one list a ListSink was given.
type SentList struct {
	Box     api.BoxID
	Titles  []media.ID
	Version uint64
}

// ListSink is a customers.ListSink that records what it is sent.
type ListSink struct {
	mu   sync.Mutex
	sent []SentList
	fail error
}

var _ customers.ListSink = (*ListSink)(nil)

// SetPriorityList records a list.
func (l *ListSink) SetPriorityList(ctx context.Context, box api.BoxID, titles []media.ID, version uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail != nil {
		return l.fail
	}
	l.sent = append(l.sent, SentList{Box: box, Titles: slices.Clone(titles), Version: version})
	return nil
}

// FailWith makes every later SetPriorityList fail with err (nil: none).
func (l *ListSink) FailWith(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fail = err
}

// Sent returns the lists sent, in order.
func (l *ListSink) Sent() []SentList {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sent)
}

// Clock is a clock that moves only when told.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
