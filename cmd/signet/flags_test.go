package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseDays(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "30d", want: 720 * time.Hour},
		{in: "1d12h", want: 36 * time.Hour},
		{in: "1d30m", want: 24*time.Hour + 30*time.Minute},
		{in: "0d", want: 0},
		{in: "-2d", want: -48 * time.Hour},
		{in: "720h", want: 720 * time.Hour},
		{in: "90m", want: 90 * time.Minute},
		{in: "1s", want: time.Second},
		{in: "d", wantErr: `"d": want a duration such as 90m, 24h or 30d`},
		{in: "1.5d", wantErr: `"1.5d": want a duration`},
		{in: "30x", wantErr: `"30x": want a duration`},
		{in: "1d-1h", wantErr: `"1d-1h": want a duration such as 90m, 24h, 30d or 1d12h`},
		{in: "1d2d", wantErr: `"1d2d"`},
		{in: "99999999999999d", wantErr: "too many days"},
		{in: "", wantErr: `"": want a duration`},
	}
	for _, tc := range tests {
		got, err := parseDays(tc.in)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("parseDays(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("parseDays(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if tc.wantErr == "" && tc.want != 0 {
			if back, err := parseDays(formatDays(tc.want)); err != nil || back != tc.want {
				t.Errorf("formatDays(%v) = %q does not parse back: %v, %v", tc.want, formatDays(tc.want), back, err)
			}
		}
	}
}
