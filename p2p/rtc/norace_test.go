//go:build !race

package rtc

const raceEnabled = 0
