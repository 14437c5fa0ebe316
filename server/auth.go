package server

import (
	"context"
	"errors"
	"fmt"
	"github.com/fedtune/fedtune/audit"
	"strings"
	"sync"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// methodRoles is the authorization table: which roles may call a method.
// A method missing from the table is denied to everyone.
var methodRoles = map[string][]Role{
	"/fedtune.v1.Federation/Enroll":            nil, // one-time token, no certificate yet
	"/fedtune.v1.Federation/Renew":             {RoleSite},
	"/fedtune.v1.Federation/WatchRounds":       {RoleSite},
	"/fedtune.v1.Federation/GetRound":          {RoleSite},
	"/fedtune.v1.Federation/Refuse":            {RoleSite},
	"/fedtune.v1.Federation/SubmitSecAgg":      {RoleSite},
	"/fedtune.v1.Federation/AwaitStage":        {RoleSite},
	"/fedtune.v1.Federation/UploadMaskedInput": {RoleSite},
	"/fedtune.v1.Federation/SubmitDPSpend":     {RoleSite},
	"/fedtune.v1.Federation/GetCheckpoint":     {RoleSite},
	"/fedtune.v1.Federation/Cosign":            {RoleSite},
	"/fedtune.v1.Federation/FetchAdapter":      {RoleSite},
	"/fedtune.v1.Admin/AddSite":                {RoleAdmin},
	"/fedtune.v1.Admin/RevokeSite":             {RoleAdmin},
	"/fedtune.v1.Admin/OpenRound":              {RoleAdmin},
	"/fedtune.v1.Admin/AbortRound":             {RoleAdmin},
	"/fedtune.v1.Admin/ListState":              {RoleAdmin, RoleAuditor},
	"/fedtune.v1.Audit/GetCheckpoint":          {RoleAuditor, RoleAdmin, RoleSite},
	"/fedtune.v1.Audit/GetEntries":             {RoleAuditor, RoleAdmin},
	"/fedtune.v1.Audit/GetInclusionProof":      {RoleAuditor, RoleAdmin, RoleSite},
	"/grpc.health.v1.Health/Check":             nil,
	"/grpc.health.v1.Health/Watch":             nil,
	"/grpc.health.v1.Health/List":              nil,
}

type identityKey struct{}

// callerIdentity returns the authenticated identity the interceptors put in ctx.
func callerIdentity(ctx context.Context) (Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// denial is an authorization or limit failure: it is audited, then returned.
type denial struct {
	code   codes.Code
	reason string
}

// authenticate returns the caller's identity from its verified TLS client
// certificate, or an empty identity when it presented none.
func (s *Server) authenticate(ctx context.Context) (Identity, string, *denial) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, "", &denial{codes.Unauthenticated, "no peer information"}
	}
	addr := p.Addr.String()
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return Identity{}, addr, &denial{codes.Unauthenticated, "connection is not TLS"}
	}
	if len(ti.State.VerifiedChains) == 0 || len(ti.State.PeerCertificates) == 0 {
		return Identity{}, addr, nil
	}
	id, err := IdentityFromCert(ti.State.PeerCertificates[0])
	if err != nil {
		return Identity{}, addr, &denial{codes.Unauthenticated, err.Error()}
	}
	return id, addr, nil
}

func (s *Server) authorize(ctx context.Context, method string) (context.Context, *denial, Identity, string) {
	allowed, known := methodRoles[method]
	id, addr, d := s.authenticate(ctx)
	if d != nil {
		return ctx, d, id, addr
	}
	if !known {
		return ctx, &denial{codes.PermissionDenied, "method is not allowed"}, id, addr
	}
	if allowed == nil {
		return context.WithValue(ctx, identityKey{}, id), nil, id, addr
	}
	if id.Role == "" {
		return ctx, &denial{codes.Unauthenticated, "a client certificate from the federation CA is required"}, id, addr
	}
	ok := false
	for _, r := range allowed {
		ok = ok || r == id.Role
	}
	if !ok {
		return ctx, &denial{codes.PermissionDenied, fmt.Sprintf("role %s may not call %s", id.Role, method)}, id, addr
	}
	if id.Role == RoleSite {
		if err := s.st.checkSiteCert(ctx, id.Name, id.Serial); err != nil {
			return ctx, &denial{codes.PermissionDenied, fmt.Sprintf("site %s: %v", id.Name, err)}, id, addr
		}
	}
	if !s.limiter(id, addr).Allow() {
		return ctx, &denial{codes.ResourceExhausted, fmt.Sprintf("rate limit of %.0f requests/s exceeded", s.cfg.Limits.RatePerSecond)}, id, addr
	}
	return context.WithValue(ctx, identityKey{}, id), nil, id, addr
}

// limiter returns the token bucket of one identity (or, before enrollment,
// of one remote host).
func (s *Server) limiter(id Identity, addr string) *rate.Limiter {
	key := id.String()
	if id.Role == "" {
		key = "anon:" + strings.Split(addr, ":")[0]
	}
	s.limMu.Lock()
	defer s.limMu.Unlock()
	l, ok := s.limiters[key]
	if !ok {
		if len(s.limiters) >= maxLimiters {
			// Bound memory against callers cycling addresses: start over
			// (every bucket refills to its burst).
			clear(s.limiters)
		}
		l = rate.NewLimiter(rate.Limit(s.cfg.Limits.RatePerSecond), s.cfg.Limits.Burst)
		s.limiters[key] = l
	}
	return l
}

// maxLimiters bounds the number of token buckets kept.
const maxLimiters = 10000

// deny writes an access.denied audit entry and returns the status.
func (s *Server) deny(ctx context.Context, method string, id Identity, addr string, d *denial) error {
	s.metrics.denied.inc(d.code.String())
	if _, err := s.record(ctx, Event{
		Kind: audit.AccessDenied, Actor: actorID(id), Auth: authMethod(id),
		Outcome: audit.OutcomeDenied, Reason: d.reason,
		Objects: []audit.Object{{Type: "rpc", ID: method}}, Message: "peer " + addr,
	}); err != nil {
		s.log.Printf("audit access.denied: %v", err)
	}
	return status.Error(d.code, d.reason)
}

func authMethod(id Identity) string {
	if id.Role == "" {
		return "none"
	}
	return "mtls"
}

// actorID is the audit actor id of an identity.
func actorID(id Identity) string {
	switch id.Role {
	case RoleSite:
		return "site:" + id.Name
	case RoleAdmin, RoleAuditor:
		return "user:" + string(id.Role) + "." + id.Name
	case RoleServer:
		return "service:aggregator"
	}
	return "user:anonymous"
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Printf("panic in %s: %v", info.FullMethod, r)
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	ctx, d, id, addr := s.authorize(ctx, info.FullMethod)
	if d != nil {
		return nil, s.deny(ctx, info.FullMethod, id, addr, d)
	}
	if m, ok := req.(proto.Message); ok {
		if n := proto.Size(m); n > s.cfg.Limits.MaxMessageBytes {
			return nil, s.deny(ctx, info.FullMethod, id, addr, &denial{codes.ResourceExhausted,
				fmt.Sprintf("message of %d bytes exceeds limits.max_message_bytes %d", n, s.cfg.Limits.MaxMessageBytes)})
		}
	}
	s.metrics.rpcs.inc(info.FullMethod)
	resp, err = h(ctx, req)
	var dn *deniedError
	if errors.As(err, &dn) {
		return nil, s.deny(ctx, info.FullMethod, id, addr, &denial{dn.code, dn.reason})
	}
	return resp, err
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Printf("panic in %s: %v", info.FullMethod, r)
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	ctx, d, id, addr := s.authorize(ss.Context(), info.FullMethod)
	if d != nil {
		return s.deny(ctx, info.FullMethod, id, addr, d)
	}
	s.metrics.rpcs.inc(info.FullMethod)
	err = h(srv, &limitedStream{ServerStream: ss, ctx: ctx, max: s.cfg.Limits.MaxMessageBytes})
	var dn *deniedError
	if errors.As(err, &dn) {
		return s.deny(ctx, info.FullMethod, id, addr, &denial{dn.code, dn.reason})
	}
	return err
}

// deniedError is returned by handlers for refusals that must be audited
// (oversized upload, wrong round, not a participant).
type deniedError struct {
	code   codes.Code
	reason string
}

func (e *deniedError) Error() string { return e.reason }

func denied(code codes.Code, format string, args ...any) error {
	return &deniedError{code: code, reason: fmt.Sprintf(format, args...)}
}

type limitedStream struct {
	grpc.ServerStream
	ctx context.Context
	max int
}

func (l *limitedStream) Context() context.Context { return l.ctx }

func (l *limitedStream) RecvMsg(m any) error {
	if err := l.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if pm, ok := m.(proto.Message); ok {
		if n := proto.Size(pm); n > l.max {
			return denied(codes.ResourceExhausted, "message of %d bytes exceeds limits.max_message_bytes %d", n, l.max)
		}
	}
	return nil
}

// metrics are the counters served at /metrics in the Prometheus text
// exposition format.
type metrics struct {
	rpcs   counterVec
	denied counterVec
	rounds counterVec
	bytes  counterVec
}

type counterVec struct {
	mu sync.Mutex
	m  map[string]float64
}

func (c *counterVec) inc(label string) { c.add(label, 1) }

func (c *counterVec) add(label string, v float64) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]float64{}
	}
	c.m[label] += v
	c.mu.Unlock()
}

func (c *counterVec) snapshot() map[string]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]float64, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}
