package main

import (
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/spf13/pflag"
)

// daysTypeName names a duration that takes days in YAML type errors (see friendlyType).
const daysTypeName = "days"

// day is the unit the "d" suffix stands for: 24 hours (calendar days are not tracked).
const day = 24 * time.Hour

var daysRE = regexp.MustCompile(`^([+-]?)(\d+)d(.*)$`)

// parseDays parses a Go duration ("90m", "24h") that may start with a number of days ("30d", "1d12h").
func parseDays(s string) (time.Duration, error) {
	m := daysRE.FindStringSubmatch(s)
	if m == nil {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%q: want a duration such as 90m, 24h or 30d", s)
		}
		return d, nil
	}
	n, err := strconv.ParseInt(m[2], 10, 64)
	if err != nil || n > int64(1<<63-1)/int64(day) {
		return 0, fmt.Errorf("%q: too many days", s)
	}
	d := time.Duration(n) * day
	if m[3] != "" {
		rest, err := time.ParseDuration(m[3])
		if err != nil || rest < 0 || m[3][0] == '+' || m[3][0] == '-' {
			return 0, fmt.Errorf("%q: want a duration such as 90m, 24h, 30d or 1d12h", s)
		}
		d += rest
	}
	if m[1] == "-" {
		d = -d
	}
	return d, nil
}

// formatDays prints a duration as parseDays reads it: whole days as "30d", others as Go does.
func formatDays(d time.Duration) string {
	if d == 0 {
		return "0" // what pflag recognises as "no default"
	}
	if d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return d.String()
}

// daysValue is a duration flag that also takes days ("30d"), for flags measured in days or weeks.
type daysValue time.Duration

func (v *daysValue) Set(s string) error {
	d, err := parseDays(s)
	if err != nil {
		return err
	}
	*v = daysValue(d)
	return nil
}

func (v *daysValue) String() string { return formatDays(time.Duration(*v)) }
func (v *daysValue) Type() string   { return "duration" }

// daysFlag defines a duration flag that accepts a "d" suffix for days.
func daysFlag(f *pflag.FlagSet, dst *time.Duration, name string, value time.Duration, usage string) {
	*dst = value
	f.Var((*daysValue)(dst), name, usage)
}
