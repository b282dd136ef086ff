package rollback

import (
	"testing"

	"github.com/boxswarm/boxswarm/internal/swtpmtest"
)

func TestCoreSequenceSwtpm(t *testing.T) {
	coreSequence(t, swtpmtest.Start(t))
}
