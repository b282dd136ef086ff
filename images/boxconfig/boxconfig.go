// Package boxconfig is the box's configuration: the operator facts the
// manufacturer bakes into the signed second stage (so they are verified
// with the image), read by the box's daemons with -config. It says where
// the head-end's gateway is and which keys the box trusts: the head-end's
// CA, the media signing keys and the scheduler's token key.
package boxconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// Path is where the image baker puts the configuration in the second stage.
const Path = "/etc/boxswarm/box.json"

// Config is /etc/boxswarm/box.json. The key and certificate fields are
// files in the image, next to it.
type Config struct {
	// HeadEnd is the gateway's address, host:port, as the box reaches it.
	HeadEnd string `json:"headend"`
	// CA is the head-end's CA certificate(s), PEM.
	CA string `json:"ca"`
	// MediaKeys are the trusted media signing keys, PKIX PEM.
	MediaKeys []string `json:"media_keys"`
	// SchedulerKey is the scheduler's transfer token key, PKIX PEM.
	SchedulerKey string `json:"scheduler_key"`
}

// Load reads and checks a configuration file; unknown fields are errors.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("box configuration: %w", err)
	}
	var c Config
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("box configuration %s: %w", path, err)
	}
	if err := c.Check(); err != nil {
		return Config{}, fmt.Errorf("box configuration %s: %w", path, err)
	}
	return c, nil
}

// Check reports what is missing.
func (c Config) Check() error {
	var errs []error
	if c.HeadEnd == "" {
		errs = append(errs, errors.New("headend is required"))
	}
	if c.CA == "" {
		errs = append(errs, errors.New("ca is required"))
	}
	if len(c.MediaKeys) == 0 {
		errs = append(errs, errors.New("at least one media key is required"))
	}
	if c.SchedulerKey == "" {
		errs = append(errs, errors.New("scheduler_key is required"))
	}
	return errors.Join(errs...)
}
