// Package oci is the daemon's side of containers: OCI runtime specs
// (DefaultSpec and helpers) and Runtime, the client of the node-wide
// crid-monitor, which creates containers with libcontainer and owns their
// stdio, logs and exits. The daemon never links libcontainer: everything
// goes over the monitor's socket (oci/protocol).
//
// Runtime finds a running monitor or starts one as the daemon's child, in
// its own session. When the monitor dies, the daemon — its parent and a
// child subreaper — reaps the container inits that exit meanwhile and
// records their exits, restarts the monitor and hands back the stdio pipes
// it kept duplicates of, so no container and no log byte is lost.
package oci
