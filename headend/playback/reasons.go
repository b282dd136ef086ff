package playback

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/boxswarm/boxswarm/headend/customers"
	"github.com/boxswarm/boxswarm/headend/pass"
	"github.com/boxswarm/boxswarm/headend/vault"
	"github.com/boxswarm/boxswarm/media/keywrap"
)

// Reasons are for the viewer, on the box's screen: what happened and what
// they can do, nothing of the head-end's insides. The error carries those.
const tryAgain = "Something went wrong on our side. Please try again in a moment."

var passReasons = []struct {
	err    error
	reason string
}{
	{customers.ErrSuspended, "Your account is suspended, so nothing can be played. Please contact customer service."},
	{customers.ErrRegionBlocked, "This title is not available in the region where your box is installed."},
	{customers.ErrRentalOver, "Your rental of this title has ended."},
	{customers.ErrNotYourBox, "This box is not registered to an account. Please activate it with the code you got at sign-up."},
	{customers.ErrNotActivated, "This box has not been activated yet."},
	{customers.ErrUnknownAccount, "This box's account no longer exists."},
	{customers.ErrUnknownTitle, "This title is not in the catalog."},
	{customers.ErrNotPublished, "This title has not been released yet."},
	{customers.ErrNotSubscribed, "This title's catalog is not part of your subscriptions."},
	{customers.ErrNotForSale, "This title cannot be rented or bought."},
	{customers.ErrPaymentDeclined, "Your payment was declined. Please check your payment method on your account page."},
	{customers.ErrPaymentFailed, "The payment could not be completed and nothing was charged. Please try again."},
	{customers.ErrPriceChanged, "The price has just changed. Please confirm the new price."},
	{customers.ErrNotConfirmed, "Please confirm the price to play this title."},
	{context.Canceled, tryAgain},
	{context.DeadlineExceeded, tryAgain},
}

// passReason is what a viewer is told when a pass is refused with err.
func passReason(err error) string {
	for _, r := range passReasons {
		if errors.Is(err, r.err) {
			return r.reason
		}
	}
	return tryAgain
}

// confirmReason asks the viewer to confirm the quoted price.
func confirmReason(q customers.Quote, rentalOver bool) string {
	var pre string
	if rentalOver {
		pre = "Your rental of this title has ended. "
	}
	if q.Kind == customers.KindBuy {
		return fmt.Sprintf("%sBuying this title costs %s. Confirm to buy it and play.", pre, q.Price)
	}
	again := ""
	if rentalOver {
		again = " again"
	}
	return fmt.Sprintf("%sRenting this title%s costs %s and lets you watch it for %s. Confirm to rent it and play.",
		pre, again, q.Price, span(q.Window))
}

// span says a rental window the way a viewer would.
func span(d time.Duration) string {
	switch {
	case d == time.Hour:
		return "1 hour"
	case d > 0 && d%time.Hour == 0:
		return fmt.Sprintf("%d hours", d/time.Hour)
	case d > 0 && d%time.Minute == 0:
		return fmt.Sprintf("%d minutes", d/time.Minute)
	}
	return d.String()
}

var keyReasons = []struct {
	err    error
	reason string
}{
	{vault.ErrNoPass, "No media pass was presented. The box will ask for one."},
	{pass.ErrMalformed, "The media pass is damaged. The box will ask for a new one."},
	{pass.ErrUnsupportedVersion, "The media pass is of a kind this service does not read. Please update the box."},
	{pass.ErrUnknownIssuer, "The media pass was not issued by this service."},
	{pass.ErrBadSignature, "The media pass has been altered and is not valid."},
	{pass.ErrExpired, "The media pass has expired. The box will ask for a new one."},
	{pass.ErrNotYetValid, "The media pass is not valid yet. Please check the box's clock."},
	{vault.ErrWrongBox, "The media pass was issued to another box."},
	{vault.ErrReplayed, "The media pass has already been used. The box will ask for a new one."},
	{vault.ErrUnknownTitle, "This title cannot be played at the moment."},
	{keywrap.ErrBadPublicKey, "This box's identity key cannot receive content keys. Please contact customer service."},
}

// keyReason is what a box and its viewer are told when a key is refused
// with err: the vault's outcome code, which the box can act on, and a
// sentence.
func keyReason(outcome string, err error) string {
	reason := tryAgain
	for _, r := range keyReasons {
		if errors.Is(err, r.err) {
			reason = r.reason
			break
		}
	}
	if outcome == "" {
		return reason
	}
	return outcome + ": " + reason
}
