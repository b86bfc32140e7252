package cri

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/klog/v2"
	"k8s.io/streaming/pkg/httpstream/wsstream"
	utilexec "k8s.io/utils/exec"

	"github.com/crid-dev/crid/panicguard"
)

// The websocket protocols the streaming package does not serve itself.
// kubelet 1.31+ clients (and critest's -websocket-* runs) ask for them:
// exec and attach over v5.channel.k8s.io (v4 plus a signal that closes one
// stream, so a client can end the command's stdin), and port-forward as
// SPDY tunnelled in websocket binary messages.
const (
	v5ChannelProtocol  = "v5.channel.k8s.io"
	spdyTunnelProtocol = "SPDY/3.1+portforward.k8s.io"
	// tokenTTL matches the streaming package's request cache: a URL is
	// good for one minute.
	tokenTTL = time.Minute
	// maxTokens bounds the URLs handed out and not yet used, as the
	// streaming package's cache does.
	maxTokens = 1000
)

// Channel numbers of the channel.k8s.io protocols.
const (
	chanStdin = iota
	chanStdout
	chanStderr
	chanError
	chanResize
)

// pendingStream is a URL handed out and not used yet.
type pendingStream struct {
	exec    *runtime.ExecRequest
	attach  *runtime.AttachRequest
	expires time.Time
}

// tokens gates every streaming URL: each is used once, by whichever
// protocol, within its TTL. The streaming package keeps its own cache too;
// this one lets crid serve the websocket protocols that package does not,
// without a token being usable twice (once per protocol).
type tokens struct {
	mu sync.Mutex
	m  map[string]pendingStream
}

// add records the token of url; a full table refuses, as the streaming
// package does when too many URLs are in flight.
func (t *tokens) add(url string, p pendingStream) error {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]pendingStream{}
	}
	for k, v := range t.m {
		if now.After(v.expires) {
			delete(t.m, k)
		}
	}
	if len(t.m) >= maxTokens {
		return errors.New("too many streaming requests in flight")
	}
	p.expires = now.Add(tokenTTL)
	t.m[path.Base(url)] = p
	return nil
}

// take consumes token; false if it was never handed out, is used, or expired.
func (t *tokens) take(token string) (pendingStream, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.m[token]
	if !ok {
		return pendingStream{}, false
	}
	delete(t.m, token)
	if time.Now().After(p.expires) {
		return pendingStream{}, false
	}
	return p, true
}

// ServeHTTP checks the URL's token, then serves v5 websocket exec/attach and
// SPDY-over-websocket port-forward itself and hands everything else (SPDY,
// websocket v1-v4) to the streaming package.
func (ss *streamServer) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	kind, token := path.Split(strings.TrimSuffix(req.URL.Path, "/"))
	kind = strings.Trim(kind, "/")
	switch kind {
	case "exec", "attach", "portforward":
	default:
		http.NotFound(w, req)
		return
	}
	p, ok := ss.tokens.take(token)
	if !ok {
		http.Error(w, fmt.Sprintf("streaming token %q: unknown, used or expired", token), http.StatusNotFound)
		return
	}
	switch {
	case kind != "portforward" && wsstream.IsWebSocketRequestWithStreamCloseProtocol(req):
		ss.serveV5(w, req, p)
	case kind == "portforward" && wsstream.IsWebSocketRequestWithTunnelingProtocol(req):
		ss.serveTunnel(w, req)
	default:
		ss.srv.ServeHTTP(w, req)
	}
}

// serveV5 runs an exec or attach over v5.channel.k8s.io: stdin, stdout,
// stderr, the error channel (a JSON status at the end) and the resize
// channel (JSON terminal sizes).
func (ss *streamServer) serveV5(w http.ResponseWriter, req *http.Request, p pendingStream) {
	var stdin, stdout, stderr, tty bool
	switch {
	case p.exec != nil:
		stdin, stdout, stderr, tty = p.exec.GetStdin(), p.exec.GetStdout(), p.exec.GetStderr(), p.exec.GetTty()
	case p.attach != nil:
		stdin, stdout, stderr, tty = p.attach.GetStdin(), p.attach.GetStdout(), p.attach.GetStderr(), p.attach.GetTty()
	}
	if tty {
		stderr = false // a terminal merges it into stdout
	}
	pick := func(want bool, t wsstream.ChannelType) wsstream.ChannelType {
		if want {
			return t
		}
		return wsstream.IgnoreChannel
	}
	channels := []wsstream.ChannelType{
		chanStdin:  pick(stdin, wsstream.ReadChannel),
		chanStdout: pick(stdout, wsstream.WriteChannel),
		chanStderr: pick(stderr, wsstream.WriteChannel),
		chanError:  wsstream.WriteChannel,
		chanResize: pick(tty, wsstream.ReadChannel),
	}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		v5ChannelProtocol: {Binary: true, Channels: channels},
	})
	conn.SetIdleTimeout(ss.idle)
	_, rwc, err := conn.Open(w, req)
	if err != nil {
		klog.ErrorS(err, "Websocket stream upgrade failed", "path", req.URL.Path)
		return
	}
	defer conn.Close()

	ctx := req.Context()
	var in io.Reader
	var out, errw io.WriteCloser
	if stdin {
		in = rwc[chanStdin]
	}
	if stdout {
		out = rwc[chanStdout]
	}
	if stderr {
		errw = rwc[chanStderr]
	}
	var resize chan remotecommand.TerminalSize
	if tty {
		resize = make(chan remotecommand.TerminalSize)
		go relayResize(ctx, rwc[chanResize], resize) // ends when the resize channel or ctx does
	}
	r := &streamRuntime{ss.s}
	if p.exec != nil {
		err = r.Exec(ctx, p.exec.GetContainerId(), p.exec.GetCmd(), in, out, errw, tty, resize)
	} else {
		err = r.Attach(ctx, p.attach.GetContainerId(), in, out, errw, tty, resize)
	}
	if werr := writeStreamStatus(rwc[chanError], err); werr != nil {
		klog.V(2).InfoS("Writing the stream status failed", "err", werr)
	}
}

// relayResize decodes terminal sizes until the client's resize channel
// ends (or the request does), then closes sizes.
func relayResize(ctx context.Context, r io.Reader, sizes chan<- remotecommand.TerminalSize) {
	defer close(sizes)
	defer panicguard.Recover("websocket resize relay", nil)
	d := json.NewDecoder(r)
	for {
		var sz remotecommand.TerminalSize
		if err := d.Decode(&sz); err != nil {
			return
		}
		select {
		case sizes <- sz:
		case <-ctx.Done():
			return
		}
	}
}

// streamStatus is the channel protocols' final status, shaped like the
// metav1.Status that clients decode.
type streamStatus struct {
	Status  string               `json:"status"`
	Message string               `json:"message,omitempty"`
	Reason  string               `json:"reason,omitempty"`
	Details *streamStatusDetails `json:"details,omitempty"`
}

type streamStatusDetails struct {
	Causes []streamStatusCause `json:"causes,omitempty"`
}

type streamStatusCause struct {
	Type    string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// writeStreamStatus reports err (nil, a command's exit code, or a
// failure) on the error channel.
func writeStreamStatus(w io.Writer, err error) error {
	st := streamStatus{Status: "Success"}
	var exit utilexec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && exit.Exited():
		st = streamStatus{
			Status:  "Failure",
			Reason:  remotecommand.NonZeroExitCodeReason,
			Message: fmt.Sprintf("command terminated with non-zero exit code: %v", err),
			Details: &streamStatusDetails{Causes: []streamStatusCause{{
				Type: remotecommand.ExitCodeCauseType, Message: strconv.Itoa(exit.ExitStatus()),
			}}},
		}
	default:
		st = streamStatus{Status: "Failure", Reason: "InternalError", Message: err.Error()}
	}
	b, merr := json.Marshal(st)
	if merr != nil {
		return fmt.Errorf("encode stream status: %w", merr)
	}
	_, werr := w.Write(b)
	return werr
}

// serveTunnel serves a port-forward whose client tunnels SPDY through a
// websocket (client-go's SPDY-over-websocket dialer): the request goes to
// the streaming package as the SPDY upgrade it stands for, and the SPDY
// connection runs over the websocket's binary messages. The websocket
// upgrade happens only when the streaming package accepts the request, so
// a refusal (bad protocol, no such port) reaches the client as an HTTP
// status.
func (ss *streamServer) serveTunnel(w http.ResponseWriter, req *http.Request) {
	inner := req.Clone(req.Context())
	for _, h := range []string{"Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions"} {
		inner.Header.Del(h)
	}
	inner.Header.Set("Connection", "Upgrade")
	inner.Header.Set("Upgrade", "SPDY/3.1")
	inner.Header.Set("X-Stream-Protocol-Version", strings.TrimPrefix(spdyTunnelProtocol, "SPDY/3.1+"))
	tw := &tunnelWriter{w: w, req: req, header: http.Header{}}
	ss.srv.ServeHTTP(tw, inner)
}

// tunnelWriter stands for the response to a SPDY upgrade: a 101 and the
// hijack become a websocket upgrade of the real response; any other
// status goes out as it is.
type tunnelWriter struct {
	w        http.ResponseWriter
	req      *http.Request
	header   http.Header
	switched bool
	wrote    bool
}

func (t *tunnelWriter) Header() http.Header { return t.header }

func (t *tunnelWriter) WriteHeader(code int) {
	if t.wrote || t.switched {
		return
	}
	if code == http.StatusSwitchingProtocols {
		t.switched = true
		return
	}
	t.wrote = true
	for k, v := range t.header {
		t.w.Header()[k] = v
	}
	t.w.WriteHeader(code)
}

func (t *tunnelWriter) Write(b []byte) (int, error) {
	if t.switched {
		return 0, errors.New("write to a switched response")
	}
	if !t.wrote {
		t.WriteHeader(http.StatusOK)
	}
	return t.w.Write(b)
}

// Hijack upgrades the real response to a websocket carrying SPDY.
func (t *tunnelWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !t.switched {
		return nil, nil, errors.New("hijack before switching protocols")
	}
	up := gwebsocket.Upgrader{
		Subprotocols: []string{spdyTunnelProtocol},
		// The URL's single-use token is the credential; clients are not
		// browsers and send no Origin worth checking.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	ws, err := up.Upgrade(t.w, t.req, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("websocket upgrade for a SPDY tunnel: %w", err)
	}
	c := &wsConn{ws: ws}
	return c, bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c)), nil
}

// wsConn is a byte stream over websocket binary messages: each Write is a
// message, Reads run through messages in order.
type wsConn struct {
	ws *gwebsocket.Conn
	rd io.Reader // the message being read
	wm sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.rd == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				var ce *gwebsocket.CloseError
				if errors.As(err, &ce) && ce.Code == gwebsocket.CloseNormalClosure {
					return 0, io.EOF
				}
				return 0, err
			}
			if typ != gwebsocket.BinaryMessage {
				return 0, fmt.Errorf("SPDY tunnel: message of type %d, not binary", typ)
			}
			c.rd = r
		}
		n, err := c.rd.Read(p)
		if errors.Is(err, io.EOF) {
			c.rd = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wm.Lock()
	defer c.wm.Unlock()
	if err := c.ws.WriteMessage(gwebsocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) Close() error {
	c.wm.Lock()
	_ = c.ws.WriteControl(gwebsocket.CloseMessage, gwebsocket.FormatCloseMessage(gwebsocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.wm.Unlock()
	return c.ws.Close()
}

func (c *wsConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *wsConn) SetDeadline(t time.Time) error      { return c.ws.NetConn().SetDeadline(t) }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
