//go:build !linux

package procfs

import "os"

func openReadOnly(path string) (int, error) { return -1, os.ErrInvalid }
func readFD(int, []byte) (int, error)       { return 0, os.ErrInvalid }
func closeFD(int)                           {}
