package cri

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gwebsocket "github.com/gorilla/websocket"
	utilexec "k8s.io/utils/exec"
)

// Every URL is good once, whatever the protocol, and not after its TTL.
func TestTokensSingleUseAndExpiry(t *testing.T) {
	var tk tokens
	if err := tk.add("http://127.0.0.1:1/exec/abc", pendingStream{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := tk.take("abc"); !ok {
		t.Fatal("a fresh token was refused")
	}
	if _, ok := tk.take("abc"); ok {
		t.Fatal("a token was accepted twice")
	}
	if _, ok := tk.take("never-issued"); ok {
		t.Fatal("a token never handed out was accepted")
	}
	if err := tk.add("http://127.0.0.1:1/attach/old", pendingStream{}); err != nil {
		t.Fatal(err)
	}
	tk.mu.Lock()
	p := tk.m["old"]
	p.expires = time.Now().Add(-time.Second)
	tk.m["old"] = p
	tk.mu.Unlock()
	if _, ok := tk.take("old"); ok {
		t.Fatal("an expired token was accepted")
	}
}

// The table is bounded like the streaming package's cache; expired entries
// make room.
func TestTokensBounded(t *testing.T) {
	var tk tokens
	for i := range maxTokens {
		if err := tk.add("http://h/exec/t"+strings.Repeat("x", i), pendingStream{}); err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
	}
	if err := tk.add("http://h/exec/one-too-many", pendingStream{}); err == nil {
		t.Fatal("the table took more than maxTokens")
	}
	tk.mu.Lock()
	for k, v := range tk.m {
		v.expires = time.Now().Add(-time.Second)
		tk.m[k] = v
	}
	tk.mu.Unlock()
	if err := tk.add("http://h/exec/after-expiry", pendingStream{}); err != nil {
		t.Fatalf("expired entries did not make room: %v", err)
	}
}

// Unknown paths and tokens get a 404 before any protocol is looked at.
func TestServeHTTPRefusesUnknownTokens(t *testing.T) {
	ss := &streamServer{}
	for _, p := range []string{"/exec/nope", "/attach/nope", "/portforward/nope", "/other/x", "/"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, p, nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-Websocket-Protocol", v5ChannelProtocol)
		ss.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", p, rec.Code)
		}
	}
}

// The final status is what client-go's v4/v5 decoder reads: Success, an
// exit code as a NonZeroExitCode cause, or a failure message.
func TestWriteStreamStatus(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, `{"status":"Success"}`},
		{utilexec.CodeExitError{Err: errors.New("exited"), Code: 3},
			`{"status":"Failure","message":"command terminated with non-zero exit code: exited","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}`},
		{errors.New("no such container"), `{"status":"Failure","message":"no such container","reason":"InternalError"}`},
	} {
		var b strings.Builder
		if err := writeStreamStatus(&b, tc.err); err != nil {
			t.Fatal(err)
		}
		if b.String() != tc.want {
			t.Errorf("status of %v:\n got %s\nwant %s", tc.err, b.String(), tc.want)
		}
		if !json.Valid([]byte(b.String())) {
			t.Errorf("status of %v is not JSON", tc.err)
		}
	}
}

// tunnelServer serves inner behind a tunnelWriter, as serveTunnel does.
func tunnelServer(t *testing.T, inner http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		inner(&tunnelWriter{w: w, req: req, header: http.Header{}}, req)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func dialTunnel(srv *httptest.Server) (*gwebsocket.Conn, *http.Response, error) {
	d := gwebsocket.Dialer{Subprotocols: []string{spdyTunnelProtocol}, HandshakeTimeout: 5 * time.Second}
	return d.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
}

// A SPDY upgrade the inner handler accepts becomes a websocket whose binary
// messages carry the bytes both ways; the client's normal close is EOF.
func TestTunnelCarriesBytes(t *testing.T) {
	got := make(chan string, 1)
	srv := tunnelServer(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusSwitchingProtocols)
		c, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			got <- "hijack: " + err.Error()
			return
		}
		defer c.Close()
		if _, err := rw.WriteString("from server"); err != nil || rw.Flush() != nil {
			got <- "write failed"
			return
		}
		b, err := io.ReadAll(rw)
		if err != nil {
			got <- "read: " + err.Error()
			return
		}
		got <- string(b)
	})
	ws, resp, err := dialTunnel(srv)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.Close()
	if p := resp.Header.Get("Sec-Websocket-Protocol"); p != spdyTunnelProtocol {
		t.Fatalf("negotiated %q, want %q", p, spdyTunnelProtocol)
	}
	_, msg, err := ws.ReadMessage()
	if err != nil || string(msg) != "from server" {
		t.Fatalf("read %q, %v", msg, err)
	}
	for _, part := range []string{"one ", "two ", "three"} { // several messages read as one stream
		if err := ws.WriteMessage(gwebsocket.BinaryMessage, []byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	_ = ws.WriteControl(gwebsocket.CloseMessage, gwebsocket.FormatCloseMessage(gwebsocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	select {
	case s := <-got:
		if s != "one two three" {
			t.Fatalf("server read %q", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server never saw the end of the client's stream")
	}
}

// A request the inner handler refuses reaches the client as that HTTP
// status, not as a websocket.
func TestTunnelRefusalIsAnHTTPStatus(t *testing.T) {
	srv := tunnelServer(t, func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "unable to upgrade: unable to negotiate protocol", http.StatusForbidden)
	})
	ws, resp, err := dialTunnel(srv)
	if err == nil {
		ws.Close()
		t.Fatal("a refused tunnel was upgraded")
	}
	if resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("refusal: %v, response %+v, want 403", err, resp)
	}
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), "negotiate protocol") {
		t.Fatalf("refusal body %q", b)
	}
}
