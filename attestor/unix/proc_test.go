package unix

import (
	"os"
	"path/filepath"
	"testing"
)

// TestReadStartTime reads each stat fixture as /proc/<pid>/stat of a fake proc root.
func TestReadStartTime(t *testing.T) {
	tests := []struct {
		fixture string
		want    uint64
		wantErr bool
	}{
		{fixture: "stat-simple", want: 5000},
		{fixture: "stat-comm-with-spaces", want: 5000},
		{fixture: "stat-comm-with-paren", want: 5000},
		{fixture: "stat-comm-with-nested-parens", want: 5000},
		{fixture: "stat-comm-with-newline", want: 5000},
		{fixture: "stat-comm-empty", want: 5000},
		{fixture: "stat-start-time-max-uint64", want: 1<<64 - 1},
		{fixture: "stat-truncated", wantErr: true},
		{fixture: "stat-no-parens", wantErr: true},
		{fixture: "stat-start-time-not-a-number", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.fixture))
			if err != nil {
				t.Fatal(err)
			}
			root := t.TempDir()
			if err := os.Mkdir(filepath.Join(root, "1234"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "1234", "stat"), b, 0o644); err != nil {
				t.Fatal(err)
			}
			a := &Attestor{procRoot: root}
			got, err := a.readStartTime(1234)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("readStartTime = %d, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("readStartTime: %v", err)
			}
			if got != tt.want {
				t.Errorf("readStartTime = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestParseIDs(t *testing.T) {
	tests := []struct {
		name     string
		status   string
		uid, gid uint32
		wantErr  bool
	}{
		{
			name:   "real ids are the first column",
			status: "Name:\tsu\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t0\t0\t0\nGid:\t100\t0\t0\t0\nGroups:\t1 2\n",
			uid:    1000, gid: 100,
		},
		{
			name:   "max ids",
			status: "Uid:\t4294967295\t1\t1\t1\nGid:\t4294967294\t1\t1\t1\n",
			uid:    4294967295, gid: 4294967294,
		},
		{name: "no gid line", status: "Uid:\t1\t1\t1\t1\n", wantErr: true},
		{name: "empty uid line", status: "Uid:\nGid:\t1\t1\t1\t1\n", wantErr: true},
		{name: "uid out of range", status: "Uid:\t4294967296\t1\t1\t1\nGid:\t1\t1\t1\t1\n", wantErr: true},
		{name: "negative uid", status: "Uid:\t-1\t1\t1\t1\nGid:\t1\t1\t1\t1\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			uid, gid, err := parseIDs([]byte(tt.status))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseIDs = %d, %d, want an error", uid, gid)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseIDs: %v", err)
			}
			if uid != tt.uid || gid != tt.gid {
				t.Errorf("parseIDs = %d, %d, want %d, %d", uid, gid, tt.uid, tt.gid)
			}
		})
	}
}
