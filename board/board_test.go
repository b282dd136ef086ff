package board_test

import (
	"context"
	"errors"
	"testing"

	"github.com/boxswarm/boxswarm/board"
)

type panelOnly struct{}

func (panelOnly) Show(context.Context, board.PanelState, string) error { return nil }

type lit struct {
	panelOnly
	set map[board.LED]board.Light
	err error
}

func (l *lit) SetLED(_ context.Context, led board.LED, light board.Light) error {
	l.set[led] = light
	return l.err
}

func TestSetLED(t *testing.T) {
	ctx := context.Background()
	if err := board.SetLED(ctx, nil, board.LEDPower, board.LightOn); err != nil {
		t.Errorf("no panel: %v", err)
	}
	if err := board.SetLED(ctx, panelOnly{}, board.LEDPower, board.LightOn); err != nil {
		t.Errorf("a panel without lights: %v", err)
	}
	l := &lit{set: map[board.LED]board.Light{}}
	if err := board.SetLED(ctx, l, board.LEDNetwork, board.LightBlink); err != nil || l.set[board.LEDNetwork] != board.LightBlink {
		t.Errorf("a panel with lights: %v, %v", l.set, err)
	}
	l.err = errors.New("gpio gone")
	if err := board.SetLED(ctx, l, board.LEDPower, board.LightOff); !errors.Is(err, l.err) {
		t.Errorf("a failing light: %v", err)
	}
}
