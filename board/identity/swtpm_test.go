package identity

import (
	"testing"

	"github.com/boxswarm/boxswarm/internal/swtpmtest"
)

func TestBootStorySwtpm(t *testing.T) {
	bootStory(t, swtpmtest.Start(t))
}
