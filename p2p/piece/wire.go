package piece

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// wire is one end of a connection: frames in, frames out. One goroutine
// reads; writes are serialized.
type wire struct {
	rw   io.ReadWriteCloser
	wsem chan struct{} // held while a frame is written
	wbuf []byte
	rbuf []byte

	active    atomic.Int64 // time.Now().UnixNano() of the last sign of life
	timedOut  atomic.Bool
	closeOnce sync.Once
}

func newWire(rw io.ReadWriteCloser) *wire {
	w := &wire{rw: rw, wsem: make(chan struct{}, 1), wbuf: make([]byte, 0, MaxFrame), rbuf: make([]byte, MaxFrame)}
	w.touch()
	return w
}

// touch records that the connection (or the work it feeds) moved.
func (w *wire) touch() { w.active.Store(time.Now().UnixNano()) }

// recv reads the next frame. Its data is valid until the next recv.
func (w *wire) recv() (Message, error) {
	m, err := ReadFrame(w.rw, w.rbuf)
	if err != nil {
		return nil, err
	}
	w.touch()
	return m, nil
}

// send writes one frame.
func (w *wire) send(m Message) error {
	w.wsem <- struct{}{}
	defer func() { <-w.wsem }()
	w.wbuf = AppendFrame(w.wbuf[:0], m)
	if _, err := w.rw.Write(w.wbuf); err != nil {
		return err
	}
	w.touch()
	return nil
}

// farewell tries to send m, giving up after wait (the other end may not be
// reading, or a write may be stuck), then closes the connection.
func (w *wire) farewell(m Message, wait time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case w.wsem <- struct{}{}:
		case <-time.After(wait):
			return
		}
		defer func() { <-w.wsem }()
		w.rw.Write(AppendFrame(nil, m))
	}()
	select {
	case <-done:
	case <-time.After(wait):
	}
	w.close()
	<-done // the close unblocked a stuck write
}

// close closes the connection; later reads and writes fail.
func (w *wire) close() {
	w.closeOnce.Do(func() { w.rw.Close() })
}

// watch closes the connection when nothing has moved for timeout, and
// remembers that it did. stop ends the watch.
func (w *wire) watch(timeout time.Duration) (stop func()) {
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(max(timeout/8, time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case now := <-tick.C:
				if now.UnixNano()-w.active.Load() > int64(timeout) {
					w.timedOut.Store(true)
					w.close()
					return
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(quit)
			<-done
		})
	}
}

// explain turns a read or write failure into what happened: the watchdog's
// timeout reads better than "use of closed connection".
func (w *wire) explain(err error, timeout time.Duration) error {
	if w.timedOut.Load() {
		return fmt.Errorf("nothing moved for %v: %w", timeout, ErrTimeout)
	}
	return err
}
