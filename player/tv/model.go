package tv

import (
	"fmt"
	"time"
)

// DownloadState is how much of a title the box holds.
type DownloadState int

// Download states.
const (
	NotStarted DownloadState = iota
	Downloading
	Downloaded
)

func (s DownloadState) String() string {
	switch s {
	case Downloading:
		return "Downloading"
	case Downloaded:
		return "Downloaded"
	}
	return "Not started"
}

// Price is an amount in hundredths of a currency unit. The zero Price
// is an unknown one: the box's catalog carries no prices, and the
// head-end says what a title costs only when the box asks to play it.
type Price struct {
	Amount   int64
	Currency string // ISO 4217, such as "EUR"; empty if the price is unknown
}

// Known reports whether the price has been told; a known price of 0 is
// free, an unknown one is not.
func (p Price) Known() bool { return p.Currency != "" }

// String shows p as the web catalog does, such as "3.99 EUR", "Free"
// for a known price of 0, and "" for an unknown price.
func (p Price) String() string {
	if !p.Known() {
		return ""
	}
	if p.Amount == 0 {
		return "Free"
	}
	sign, a := "", p.Amount
	if a < 0 {
		sign, a = "-", -a
	}
	return fmt.Sprintf("%s%d.%02d %s", sign, a/100, a%100, p.Currency)
}

// Title is one catalog entry, as the box's catalog replica has it.
type Title struct {
	ID     string
	Name   string
	Genres []string
	Price  Price         // what a rental (or, with Buy, the title) costs
	Window time.Duration // how long a rental stays viewable
	Buy    bool          // the title is sold, not rented
	Length time.Duration // running time, zero if unknown
}

// ListItem is one title on the viewer's priority list ("My List"), in
// priority order: the first item is priority 1.
type ListItem struct {
	Title
	Download DownloadState
	Progress float64       // fraction held, 0 to 1, while Downloading
	ViewLeft time.Duration // viewing time left on a rental; zero when not viewable
}

// Viewable reports whether a rental lets the viewer watch the title now.
func (i ListItem) Viewable() bool { return i.ViewLeft > 0 }

// Data is what the box knows for the interface: the daemon hands over a
// fresh copy whenever something changes (a download progressed, the list
// synced from the web, a rental ran out).
type Data struct {
	List    []ListItem
	Catalog []Title
}

// Playback is the player's state, as the daemon reports it.
type Playback struct {
	Title    string
	Name     string
	Speed    int // 1 normal play, 0 paused, ±2 to ±32 fast forward and rewind
	Position time.Duration
	Duration time.Duration
	Ended    bool // stopped or at the end: the interface goes back to My List
}

// StatusLine describes a list item for the line under the list, such as
// "Priority 1 · Downloaded · Viewable".
func StatusLine(rank int, it ListItem) string {
	s := fmt.Sprintf("Priority %d · ", rank)
	switch it.Download {
	case Downloaded:
		s += "Downloaded · "
		if it.Viewable() {
			return s + "Viewable"
		}
		if o := offer(it.Title); o != "" {
			return s + o
		}
		// Not rented, and the price not asked yet: OK asks.
		return s + "Rent to watch"
	case Downloading:
		return s + fmt.Sprintf("Downloading %d %%", percent(it.Progress))
	}
	return s + "Not downloaded yet"
}

// offer describes what renting a title costs, such as "3.49 EUR for
// 48 h", "3.49 EUR to rent" when the rental's length is unknown, or ""
// when the price is.
func offer(t Title) string {
	switch {
	case !t.Price.Known():
		return ""
	case t.Window > 0:
		return fmt.Sprintf("%s for %s", t.Price, Hours(t.Window))
	case t.Price.Amount == 0:
		return "Free to watch"
	}
	return t.Price.String() + " to rent"
}

func percent(f float64) int { return int(clamp01(f)*100 + 1e-9) }

func clamp01(f float64) float64 {
	if f != f || f < 0 { // NaN too
		return 0
	}
	if f > 1 {
		return 1
	}
	return f
}

// Hours shows a viewing time for a viewer: "48 h", "45 min", "3 days".
func Hours(d time.Duration) string {
	switch {
	case d <= 0:
		return "0 min"
	case d < time.Hour:
		return fmt.Sprintf("%d min", int((d+time.Minute-1)/time.Minute))
	case d < 72*time.Hour:
		return fmt.Sprintf("%d h", int(d/time.Hour))
	}
	return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
}

// Clock shows a position in a title: "1:02:03", or "2:03" under an hour.
func Clock(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int(d / time.Second)
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}
