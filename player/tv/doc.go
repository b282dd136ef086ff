// Package tv is the box's TV interface: screens drawn in pure Go into an
// *image.RGBA of any size, and the navigation that turns remote-control
// keys into screen changes and into actions for the player daemon.
//
// The screens follow the viewer through the box's life:
//
//   - Activation: first boot; the viewer types the code the web sign-up
//     showed, with digit and letter keys or by picking letters with Up and
//     Down.
//   - My List: the priority list, each title with its rank, a download
//     glyph (an empty ring before the download starts, a ring filling
//     clockwise while it runs, a full disc once the box holds the title), a
//     pie of the viewing time left on a rental, and a status line for the
//     selected title such as "Priority 1 · Downloaded · Viewable".
//   - Catalog: every title alphabetically, filtered by genre, with its rank
//     on the list and download state; OK adds a title, digits then OK add
//     it at a priority.
//   - Purchase: the rental's price and window, Confirm or Cancel.
//   - Playback: the trick-play bar, position, duration and speed.
//   - Service needed: what a box that cannot run shows; no key leaves it.
//
// The package knows nothing of the scheduler, the store or the player:
// the daemon copies what it knows into Data and Playback, calls
// App.HandleKey for every key from the remote, performs the Action it
// returns, reports the outcome (App.Activated, App.PurchaseFailed,
// App.SetPlayback, ...) and redraws with App.Render:
//
//	app := tv.NewApp(tv.Config{SignupURL: "tv.example.net"})
//	r, _ := tv.NewRenderer()
//	frame := image.NewRGBA(image.Rectangle{Max: screen.Size()})
//	for {
//		k, err := keys.ReadKey(ctx)
//		...
//		switch act := app.HandleKey(k).(type) {
//		case tv.Play:
//			...
//		}
//		app.Render(r, frame)
//		screen.Show(frame)
//	}
//
// Keys (board/remote names; a keyboard stands in for the remote in QEMU,
// see board/evdev for the mapping):
//
//	My List    Up/Down/PageUp/PageDown select, digits select a rank, OK or
//	           Play plays a viewable title or offers to rent a downloaded
//	           one, Right starts moving the title (Up/Down, OK places it,
//	           Back puts it back), Delete offers to remove it, Menu goes to
//	           the catalog.
//	Catalog    Up/Down select, Left/Right change genre, a letter jumps to
//	           titles starting with it, digits type a priority, OK adds
//	           (or moves) the title, Back or Menu returns to My List.
//	Purchase   Left/Right choose, OK confirms or cancels, Back cancels.
//	Playback   Play/Pause pauses and resumes, FF and REW step through 2×
//	           to 32×, OK returns to normal speed, Left/Right jump back 10 s
//	           and forward 30 s, digit n jumps to n tenths of the title,
//	           Info hides the bar, Stop or Back ends playback.
//	Activation digits and letters type (0, 1 and 8 read as O, I and B,
//	           which base32 codes use instead), Up/Down pick a letter,
//	           Left/Right move, Delete erases, OK activates.
package tv
