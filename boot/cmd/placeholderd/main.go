// Command placeholderd stands in for the box's daemons until the real
// transfer daemon and player exist. It reports ready to the supervisor and
// then idles; its flags let tests make it slow, never ready, or crash.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/boxswarm/boxswarm/boot/console"
	"github.com/boxswarm/boxswarm/boot/supervisor"
)

func main() {
	readyAfter := flag.Duration("ready-after", 0, "wait this long before reporting ready")
	neverReady := flag.Bool("never-ready", false, "never report ready (tests a trial image that fails)")
	exitAfter := flag.Duration("exit-after", 0, "exit with status 1 after this long (tests restarts); 0 runs forever")
	flag.Parse()
	log := console.Logger(os.Stdout, "")
	log.Info("placeholder daemon: the transfer daemon and player replace it in later releases")
	if *exitAfter > 0 {
		time.AfterFunc(*exitAfter, func() {
			log.Error("exiting as asked", "after", *exitAfter)
			os.Exit(1)
		})
	}
	if !*neverReady {
		time.Sleep(*readyAfter)
		if err := supervisor.NotifyReady(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		log.Info("ready")
	}
	// Wait for the supervisor to stop us. (A bare select{} would make the
	// Go runtime declare a deadlock: nothing else could ever wake it.)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	log.Info("stopping", "signal", <-stop)
}
