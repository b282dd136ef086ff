package customers

import "context"

// PaymentProvider takes payments from the payment method behind a token
// that the provider's own form gave the viewer's browser: customer
// management never sees card numbers. Refusals wrap ErrPaymentDeclined.
type PaymentProvider interface {
	// Authorize checks that the payment method can pay amount, taking
	// nothing; a zero amount checks only that the token is good.
	Authorize(ctx context.Context, token string, amount Money) error
	// Charge takes amount. key makes it idempotent: charging again with a
	// key already charged takes nothing more and returns the same
	// reference, so a charge whose answer was lost can be retried.
	Charge(ctx context.Context, token string, amount Money, key string) (ref string, err error)
}
