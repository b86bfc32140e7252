package oci

import "golang.org/x/sys/unix"

func unixSignalName(sig unix.Signal) string { return unix.SignalName(sig) }
