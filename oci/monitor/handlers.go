package monitor

import (
	"context"
	"encoding/json"
	"os"

	"github.com/crid-dev/crid/failpoint"
	"github.com/crid-dev/crid/oci/protocol"
)

func invalid(format string, args ...any) error {
	return protocol.Errorf(protocol.CodeInvalidArgument, format, args...)
}

func precondition(format string, args ...any) error {
	return protocol.Errorf(protocol.CodeFailedPrecondition, format, args...)
}

func (m *Monitor) get(id string) (*container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.containers[id]
	if c == nil {
		return nil, protocol.Errorf(protocol.CodeNotFound, "container %q not found", id)
	}
	return c, nil
}

// handle dispatches one request. Only adopt keeps descriptors; every other
// method closes what it was sent. Each method is a fault point named
// "monitor.<method>" for tests (see package failpoint).
func (m *Monitor) handle(ctx context.Context, method string, body json.RawMessage, fds []*os.File) (any, []*os.File, error) {
	if err := failpoint.Inject("monitor." + method); err != nil {
		protocol.CloseFiles(fds)
		return nil, nil, err
	}
	if reply, ok, err := m.handleUpdates(ctx, method, body); ok {
		protocol.CloseFiles(fds)
		return reply, nil, err
	}
	if method == protocol.MethodAdopt {
		var req protocol.AdoptRequest
		if err := protocol.Decode(body, &req); err != nil {
			protocol.CloseFiles(fds)
			return nil, nil, err
		}
		return struct{}{}, nil, m.adopt(req, fds)
	}
	protocol.CloseFiles(fds)
	switch method {
	case protocol.MethodCreate, protocol.MethodExecStart, protocol.MethodDelete:
		defer m.trim.touch()
	}
	switch method {
	case protocol.MethodHello:
		return protocol.HelloReply{Version: protocol.Version, Pid: os.Getpid(), StartedAt: m.startedAt}, nil, nil
	case protocol.MethodCreate:
		var req protocol.CreateRequest
		if err := protocol.Decode(body, &req); err != nil {
			return nil, nil, err
		}
		return m.create(req)
	case protocol.MethodList:
		return m.list(), nil, nil
	case protocol.MethodAdoptDone:
		m.adoptDone()
		return struct{}{}, nil, nil
	case protocol.MethodKill:
		var req protocol.KillRequest
		if err := protocol.Decode(body, &req); err != nil {
			return nil, nil, err
		}
		return struct{}{}, nil, m.kill(req)
	case protocol.MethodExecStart:
		var req protocol.ExecStartRequest
		if err := protocol.Decode(body, &req); err != nil {
			return nil, nil, err
		}
		return m.execStart(ctx, req)
	case protocol.MethodExecWait:
		var req protocol.ExecIDRequest
		if err := protocol.Decode(body, &req); err != nil {
			return nil, nil, err
		}
		reply, err := m.execWait(ctx, req)
		return reply, nil, err
	case protocol.MethodExecKill:
		var req protocol.ExecKillRequest
		if err := protocol.Decode(body, &req); err != nil {
			return nil, nil, err
		}
		return struct{}{}, nil, m.execKill(req)
	}
	var req protocol.IDRequest
	if err := protocol.Decode(body, &req); err != nil {
		return nil, nil, err
	}
	switch method {
	case protocol.MethodStart:
		reply, err := m.start(req.ID)
		return reply, nil, err
	case protocol.MethodWait:
		reply, err := m.wait(ctx, req.ID)
		return reply, nil, err
	case protocol.MethodState:
		c, err := m.get(req.ID)
		if err != nil {
			return nil, nil, err
		}
		s := c.state()
		if s.Status == "" {
			return nil, nil, precondition("state of %s: container is being created", req.ID)
		}
		return s, nil, nil
	case protocol.MethodDelete:
		defer m.forgetExecs(req.ID)
		return struct{}{}, nil, m.delete(ctx, req.ID)
	case protocol.MethodAttach:
		fds, err := m.attach(req.ID)
		return struct{}{}, fds, err
	case protocol.MethodReopenLog:
		return struct{}{}, nil, m.reopenLog(req.ID)
	case protocol.MethodStdio:
		return m.stdioDups(req.ID)
	case protocol.MethodCloseStdin:
		return struct{}{}, nil, m.closeStdin(req.ID)
	}
	return nil, nil, invalid("unknown method %q", method)
}
