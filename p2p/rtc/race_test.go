//go:build race

package rtc

const raceEnabled = 1
