package daemon

import (
	"context"
	"image"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/boxswarm/boxswarm/board/display"
	"github.com/boxswarm/boxswarm/player/tv"
)

// The display: who draws (the daemon or the decoder), when, and what
// happens without one.

func (d *Daemon) openDisplayAtStart(ctx context.Context) {
	if d.o.OpenDisplay == nil {
		d.log.Info("no display configured: running headless")
		return
	}
	wctx, cancel := context.WithTimeout(ctx, d.o.DeviceWait)
	defer cancel()
	disp, err := d.o.OpenDisplay(wctx)
	if err != nil {
		d.log.Warn("no display: running headless, trying again now and then", "err", err, "every", d.o.DisplayRetry)
		d.goHeadless(ctx)
		return
	}
	d.useDisplay(disp)
}

// goHeadless runs without a display, and tries to open one every
// DisplayRetry in the background (a driver may bind late).
func (d *Daemon) goHeadless(ctx context.Context) {
	d.disp, d.released = nil, false
	d.wg.Go(func() {
		for {
			sleep(ctx, d.o.DisplayRetry)
			if ctx.Err() != nil {
				return
			}
			// One quick attempt: the device exists or it does not.
			octx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			disp, err := d.o.OpenDisplay(octx)
			cancel()
			if err != nil {
				d.log.Debug("still no display", "err", err)
				continue
			}
			handOver(ctx, d, func() {
				d.log.Info("display open")
				d.useDisplay(disp)
			}, func() { disp.Close() })
			return
		}
	})
}

// handOver runs take in the loop, or drop here if the daemon stops
// first: exactly one of them runs, so what they hand over (a display, a
// key) has one owner.
func handOver(ctx context.Context, d *Daemon, take, drop func()) {
	var claimed atomic.Bool
	taken := make(chan struct{})
	d.post(ctx, func() {
		if claimed.CompareAndSwap(false, true) {
			close(taken)
			take()
		}
	})
	select {
	case <-taken:
	case <-ctx.Done():
		if claimed.CompareAndSwap(false, true) {
			drop()
		}
	}
}

func (d *Daemon) useDisplay(disp display.Display) {
	d.disp, d.released = disp, false
	if sz := disp.Size(); d.img == nil || d.img.Bounds().Size() != sz {
		d.img = image.NewRGBA(image.Rectangle{Max: sz})
	}
	d.lastView = nil // whatever the screen shows now is not ours
}

// decoderOwnsScreen reports whether the decoder is drawing the picture:
// a title playing at normal speed.
func (d *Daemon) decoderOwnsScreen() bool {
	if d.sess == nil || d.sess.stopping || !d.sess.started.Load() || d.app.Screen() != tv.ScreenPlayback {
		return false
	}
	v, ok := d.app.View().(tv.PlaybackView)
	return ok && v.Speed == 1
}

// render draws the screen if it changed, at most every RenderEvery, or
// lets go of it while the decoder owns it.
func (d *Daemon) render(decoderOwns bool) {
	if decoderOwns {
		if d.disp != nil {
			d.log.Debug("display released to the decoder")
			if err := d.disp.Close(); err != nil {
				d.log.Warn("release display", "err", err)
			}
			d.disp, d.released = nil, true
		}
		return
	}
	if d.disp == nil {
		if !d.released {
			return // headless
		}
		// Taking the screen back from the decoder: the device is there.
		ctx, cancel := context.WithTimeout(d.ctx, 2*time.Second)
		disp, err := d.o.OpenDisplay(ctx)
		cancel()
		if err != nil {
			d.log.Warn("display not back from the decoder: running headless", "err", err)
			d.goHeadless(d.ctx)
			return
		}
		d.useDisplay(disp)
	}
	v := d.app.View()
	if reflect.DeepEqual(v, d.lastView) {
		return
	}
	if wait := d.o.RenderEvery - d.o.Now().Sub(d.lastRender); wait > 0 {
		d.renderTimer.Reset(wait)
		return
	}
	d.app.Render(d.r, d.img)
	if err := d.disp.Show(d.img); err != nil {
		d.log.Warn("show frame", "err", err)
		return
	}
	d.lastView, d.lastRender = v, d.o.Now()
	d.shown++
}
