package main

import (
	"context"
	"log/slog"

	"github.com/boxswarm/boxswarm/board/evdev"
	"github.com/boxswarm/boxswarm/board/remote"
)

// openRemote opens the remote: the device named, or the best one found
// (waiting for one until ctx ends). It grabs the device so that keys
// meant for the TV do not also reach the console.
func openRemote(ctx context.Context, path string, log *slog.Logger) (remote.Reader, error) {
	var d *evdev.Device
	var err error
	if path != "" {
		d, err = evdev.Open(path)
	} else {
		d, err = evdev.OpenRemote(ctx, evdev.Finder{})
	}
	if err != nil {
		return nil, err
	}
	if err := d.Grab(); err != nil {
		log.Warn("remote control not grabbed: its keys reach the console too", "device", d.Path(), "err", err)
	}
	log.Info("remote control", "device", d.Path(), "name", d.Name())
	return d, nil
}
