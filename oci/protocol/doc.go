// Package protocol is the contract between the crid daemon and crid-monitor:
// the framed wire format on the monitor's unix socket, the request and reply
// bodies, and the per-container files both sides read and write under the
// monitor's state directory. It imports nothing heavier than the OCI
// runtime-spec types so that each side links only what it needs: the daemon
// never links libcontainer and the monitor never links gRPC or protobuf.
//
// Wire: each frame is a 4-byte big-endian length, a 1-byte descriptor count
// and a JSON Message; descriptors ride along with SCM_RIGHTS. The daemon
// sends requests (ID, Method, Body), the monitor answers each with one reply
// carrying the same ID (Body or Error with a Code). Replies come in any
// order, so a blocking "wait" never holds up other calls on the connection.
// The monitor serves a bounded number of requests at a time per connection;
// calls that wait as long as a container or process lives go on a
// connection of their own (see the Method constants), so the daemon's main
// connection always has room for lifecycle calls. A malformed frame closes
// the connection, never the monitor; a panic in a handler fails only its
// request.
//
// Crash recovery: the create reply carries duplicates of the container's
// stdio (output read ends, stdin write end or the pty master), which the
// daemon keeps. If the monitor dies, the container inits become children of
// the daemon (a child subreaper), which reaps them and writes their exit
// files; it starts a new monitor, which reloads every container from the
// state directory and libcontainer's state, and hands the descriptors back
// with "adopt", so copying resumes where the pipes stand. A restarted
// daemon collects new duplicates with "stdio".
package protocol
