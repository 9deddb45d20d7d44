package filelog

import (
	"os"
	"syscall"
)

// syncData is fdatasync: the data and only the metadata needed to read it back.
func syncData(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
