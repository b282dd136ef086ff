package boxconfig

import (
	"flag"
	"fmt"
)

// Flag names the daemons share with the configuration's fields.
const (
	FlagHeadEnd      = "headend"
	FlagCA           = "ca"
	FlagMediaKey     = "media-key"
	FlagSchedulerKey = "scheduler-key"
)

// ApplyFlags reads the configuration at path and sets each of the flags
// above that fs defines and the command line did not set: a flag given
// explicitly wins over the configuration. Call it after fs.Parse.
func ApplyFlags(fs *flag.FlagSet, path string) error {
	c, err := Load(path)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	values := map[string][]string{
		FlagHeadEnd: {c.HeadEnd}, FlagCA: {c.CA}, FlagMediaKey: c.MediaKeys, FlagSchedulerKey: {c.SchedulerKey},
	}
	for name, vs := range values {
		if set[name] || fs.Lookup(name) == nil {
			continue
		}
		for _, v := range vs {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("box configuration %s: -%s %q: %w", path, name, v, err)
			}
		}
	}
	return nil
}
