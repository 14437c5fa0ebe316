package server

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/audit/merkle"
	"github.com/fedtune/fedtune/crypto/secagg"
	pb "github.com/fedtune/fedtune/proto/fedtune/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func marshalPKIX(pub crypto.PublicKey) ([]byte, error) { return x509.MarshalPKIXPublicKey(pub) }

func site(ctx context.Context) Identity {
	id, _ := callerIdentity(ctx)
	return id
}

// parseCSR checks a PKCS #10 request's signature (proof of possession) and
// key type.
func parseCSR(der []byte) (crypto.PublicKey, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr signature: %w", err)
	}
	if err := CheckPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	return csr.PublicKey, nil
}

// Enroll exchanges a one-time token for a site certificate.
func (s *Server) Enroll(ctx context.Context, req *pb.EnrollRequest) (*pb.EnrollResponse, error) {
	if !validName(req.Site) {
		return nil, denied(codes.InvalidArgument, "site name %q is not valid", req.Site)
	}
	pub, err := parseCSR(req.Csr)
	if err != nil {
		return nil, denied(codes.InvalidArgument, "site %s: %v", req.Site, err)
	}
	ik, err := x509.ParsePKIXPublicKey(req.IdentityKey)
	if err != nil {
		return nil, denied(codes.InvalidArgument, "site %s: identity key: %v", req.Site, err)
	}
	edk, ok := ik.(ed25519.PublicKey)
	if !ok {
		return nil, denied(codes.InvalidArgument, "site %s: identity key is %T, want Ed25519", req.Site, ik)
	}
	cert, err := s.ca.Issue(pub, RoleSite, req.Site, s.cfg.CertTTL.D(), nil)
	if err != nil {
		return nil, status.Error(codes.Internal, "issue certificate")
	}
	if err := s.st.consumeToken(ctx, req.Site, []byte(req.Token), s.now(), req.IdentityKey, cert.SerialNumber.Text(16), cert.NotAfter); err != nil {
		if errors.Is(err, errBadToken) || errors.Is(err, errUnknownSite) || errors.Is(err, errSiteRevoked) {
			return nil, denied(codes.PermissionDenied, "enroll site %s: %v", req.Site, err)
		}
		return nil, err
	}
	if _, err := s.record(ctx, Event{Kind: audit.SiteEnrolled, Actor: "site:" + req.Site, Auth: "token",
		Site: &audit.Site{ID: req.Site, PublicKey: base64.StdEncoding.EncodeToString(edk)}}); err != nil {
		return nil, err
	}
	return s.enrollResponse(cert), nil
}

func (s *Server) enrollResponse(cert *x509.Certificate) *pb.EnrollResponse {
	return &pb.EnrollResponse{Certificate: cert.Raw, Roots: [][]byte{s.ca.Cert().Raw}, NotAfterUnix: cert.NotAfter.Unix(),
		LogPublicKey: []byte(s.audit.VerifierKey().Encoded), Federation: s.cfg.Federation}
}

// Renew issues a fresh certificate for the calling site; the old one is
// revoked.
func (s *Server) Renew(ctx context.Context, req *pb.RenewRequest) (*pb.EnrollResponse, error) {
	id := site(ctx)
	pub, err := parseCSR(req.Csr)
	if err != nil {
		return nil, denied(codes.InvalidArgument, "%v", err)
	}
	cert, err := s.ca.Issue(pub, RoleSite, id.Name, s.cfg.CertTTL.D(), nil)
	if err != nil {
		return nil, status.Error(codes.Internal, "issue certificate")
	}
	if err := s.st.setCert(ctx, id.Name, id.Serial, cert.SerialNumber.Text(16), cert.NotAfter, s.now()); err != nil {
		return nil, err
	}
	return s.enrollResponse(cert), nil
}

// WatchRounds streams the round status on every change.
func (s *Server) WatchRounds(req *pb.WatchRoundsRequest, stream pb.Federation_WatchRoundsServer) error {
	var known *pb.RoundStatus
	for {
		st := s.rounds.waitChange(stream.Context(), known, 30*time.Second)
		if err := stream.Context().Err(); err != nil {
			return status.FromContextError(err).Err()
		}
		if known == nil || st.Round != known.Round || st.Stage != known.Stage {
			if st.Round > req.AfterRound || st.Round == 0 {
				if err := stream.Send(st); err != nil {
					return err
				}
			}
		}
		known = st
	}
}

// GetRound is the long-poll alternative to WatchRounds.
func (s *Server) GetRound(ctx context.Context, req *pb.GetRoundRequest) (*pb.RoundStatus, error) {
	wait := time.Duration(req.WaitMs) * time.Millisecond
	if wait > 60*time.Second {
		wait = 60 * time.Second
	}
	st := s.rounds.waitChange(ctx, &pb.RoundStatus{Round: req.Round, Stage: req.KnownStage}, wait)
	if req.Round != 0 && st.Round > req.Round && req.KnownStage != pb.Stage_STAGE_DONE && req.KnownStage != pb.Stage_STAGE_ABORTED {
		// The caller's round ended and the next one opened before it
		// asked: tell it how its round ended first.
		if old, err := s.rounds.roundStatus(ctx, req.Round); err == nil && old.Stage != req.KnownStage {
			return old, nil
		}
	}
	return st, nil
}

// Refuse records a site's policy refusal of a round.
func (s *Server) Refuse(ctx context.Context, req *pb.RefuseRequest) (*pb.Ack, error) {
	id := site(ctx)
	if len(req.Reason) == 0 || len(req.Reason) > 1000 {
		return nil, denied(codes.InvalidArgument, "refusal reason must be 1..1000 bytes")
	}
	if err := s.rounds.refuse(id.Name, req.Round); err != nil {
		return nil, denied(codes.FailedPrecondition, "%v", err)
	}
	fresh, err := s.st.recordRefusal(ctx, req.Round, id.Name, req.Reason)
	if err != nil {
		return nil, err
	}
	var idx uint64
	if fresh {
		if idx, err = s.record(ctx, Event{Kind: audit.RoundRefused, Round: u64p(req.Round), Actor: actorID(id), Auth: "mtls",
			Outcome: audit.OutcomeRefused, Reason: req.Reason}); err != nil {
			return nil, err
		}
	}
	return &pb.Ack{AuditIndex: idx}, nil
}

// SubmitSecAgg takes one signed secure-aggregation message.
func (s *Server) SubmitSecAgg(ctx context.Context, req *pb.SecAggMessage) (*pb.SecAggAck, error) {
	id := site(ctx)
	s.metrics.bytes.add("secagg", float64(len(req.Payload)))
	if err := s.rounds.receive(id.Name, req.Round, req.Stage, req.Payload); err != nil {
		return nil, secaggDenial(id, req.Round, err)
	}
	return &pb.SecAggAck{Received: uint32(len(req.Payload))}, nil
}

func secaggDenial(id Identity, round uint64, err error) error {
	code := codes.FailedPrecondition
	switch {
	case errors.Is(err, secagg.ErrMalformed):
		code = codes.InvalidArgument
	case errors.Is(err, secagg.ErrBadSignature), errors.Is(err, secagg.ErrNotEligible):
		code = codes.PermissionDenied
	case errors.Is(err, secagg.ErrDuplicate):
		code = codes.AlreadyExists
	}
	return denied(code, "site %s round %d: %v", id.Name, round, err)
}

// AwaitStage long-polls for the site's output of a stage.
func (s *Server) AwaitStage(ctx context.Context, req *pb.AwaitStageRequest) (*pb.StageOutput, error) {
	wait := time.Duration(req.WaitMs) * time.Millisecond
	if wait <= 0 || wait > 60*time.Second {
		wait = 60 * time.Second
	}
	return s.rounds.await(ctx, site(ctx).Name, req.Round, req.Stage, wait)
}

// UploadMaskedInput reassembles a streamed masked vector. The first chunk
// carries the signed header; the words must arrive in order and add up to
// exactly the header's length, or the upload is refused and audited.
func (s *Server) UploadMaskedInput(stream pb.Federation_UploadMaskedInputServer) error {
	ctx := stream.Context()
	id := site(ctx)
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	hdr, err := secagg.UnmarshalMaskedInputHeader(first.Header)
	if err != nil {
		return denied(codes.InvalidArgument, "site %s: masked input header: %v", id.Name, err)
	}
	cur := s.rounds.current()
	if cur.Round != hdr.Round || cur.Config == nil {
		return denied(codes.FailedPrecondition, "site %s: round %d is not running", id.Name, hdr.Round)
	}
	want := cur.Config.PaddedLen
	if uint64(hdr.VectorLen) != want || first.TotalWords != want {
		return denied(codes.InvalidArgument, "site %s: masked input of %d words, round %d takes exactly %d", id.Name, max(uint64(hdr.VectorLen), first.TotalWords), hdr.Round, want)
	}
	vec := make([]uint32, want)
	var got uint64
	chunk := first
	for {
		if chunk.Offset != got {
			return denied(codes.InvalidArgument, "site %s: chunk at word %d, expected %d", id.Name, chunk.Offset, got)
		}
		if uint64(len(chunk.Words)) > want-got {
			return denied(codes.ResourceExhausted, "site %s: upload exceeds the %d words of round %d", id.Name, want, hdr.Round)
		}
		copy(vec[got:], chunk.Words)
		got += uint64(len(chunk.Words))
		chunk, err = stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if len(chunk.Header) != 0 {
			return denied(codes.InvalidArgument, "site %s: header repeated in a later chunk", id.Name)
		}
	}
	if got != want {
		return denied(codes.InvalidArgument, "site %s: upload ended after %d of %d words", id.Name, got, want)
	}
	s.metrics.bytes.add("masked_input", float64(4*got))
	hdr.Vector = vec
	if err := s.rounds.receiveMasked(id.Name, hdr); err != nil {
		return secaggDenial(id, hdr.Round, err)
	}
	d := secagg.VectorDigest(vec)
	return stream.SendAndClose(&pb.UploadAck{Words: got, Digest: d[:]})
}

// SubmitDPSpend appends a site-signed dp.spend entry after checking the
// signature against the identity key the site enrolled with.
func (s *Server) SubmitDPSpend(ctx context.Context, req *pb.DPSpend) (*pb.Ack, error) {
	id := site(ctx)
	e, err := audit.ParseEntry(req.Entry)
	if err != nil {
		return nil, denied(codes.InvalidArgument, "site %s: dp.spend entry: %v", id.Name, err)
	}
	switch {
	case e.Kind != audit.DPSpendKind:
		return nil, denied(codes.InvalidArgument, "site %s: entry kind %s, want dp.spend", id.Name, e.Kind)
	case e.Federation != s.cfg.Federation:
		return nil, denied(codes.InvalidArgument, "site %s: entry for federation %q", id.Name, e.Federation)
	case e.Actor.ID != "site:"+id.Name || e.DP == nil || e.DP.Site != id.Name:
		return nil, denied(codes.PermissionDenied, "site %s: dp.spend entry names another site", id.Name)
	case e.Round == nil || *e.Round != req.Round:
		return nil, denied(codes.InvalidArgument, "site %s: dp.spend entry round does not match request round %d", id.Name, req.Round)
	}
	row, err := s.st.site(ctx, id.Name)
	if err != nil {
		return nil, err
	}
	pub, err := x509.ParsePKIXPublicKey(row.IdentityKey)
	if err != nil {
		return nil, err
	}
	if err := e.VerifySiteSignature(pub.(ed25519.PublicKey)); err != nil {
		return nil, denied(codes.PermissionDenied, "site %s: dp.spend signature: %v", id.Name, err)
	}
	if has, err := s.st.hasDPSpend(ctx, req.Round, id.Name); err != nil {
		return nil, err
	} else if has {
		return &pb.Ack{}, nil // a retry: already in the log, never counted twice
	}
	idx, err := s.audit.Append(ctx, e)
	if err != nil {
		return nil, err
	}
	if _, err := s.st.recordDPSpend(ctx, req.Round, id.Name, idx); err != nil {
		return nil, err
	}
	return &pb.Ack{AuditIndex: idx}, nil
}

// GetCheckpoint returns the newest signed checkpoint and a consistency
// proof from the caller's last verified size.
func (s *Server) GetCheckpoint(ctx context.Context, req *pb.GetCheckpointRequest) (*pb.Checkpoint, error) {
	return checkpoint(ctx, s.audit, req)
}

func checkpoint(ctx context.Context, l AuditLog, req *pb.GetCheckpointRequest) (*pb.Checkpoint, error) {
	note, size, err := l.Checkpoint(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	out := &pb.Checkpoint{Note: note, Size: size, FromSize: req.FromSize}
	if req.FromSize > size {
		return nil, status.Errorf(codes.InvalidArgument, "from_size %d is beyond the log size %d", req.FromSize, size)
	}
	if req.FromSize > 0 && req.FromSize < size {
		proof, err := l.ConsistencyProof(ctx, req.FromSize, size)
		if err != nil {
			return nil, err
		}
		out.ConsistencyProof = hashesToBytes(proof)
	}
	return out, nil
}

func hashesToBytes(hs []merkle.Hash) [][]byte {
	out := make([][]byte, len(hs))
	for i := range hs {
		out[i] = hs[i][:]
	}
	return out
}

// Cosign stores a site's cosignature on a checkpoint after verifying it.
func (s *Server) Cosign(ctx context.Context, req *pb.CosignRequest) (*pb.Ack, error) {
	id := site(ctx)
	row, err := s.st.site(ctx, id.Name)
	if err != nil {
		return nil, err
	}
	pub, err := x509.ParsePKIXPublicKey(row.IdentityKey)
	if err != nil {
		return nil, err
	}
	wk, err := audit.WitnessVerifierKey(WitnessName(id.Name), pub.(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	if err := s.audit.AddCosignature(ctx, req.Size, wk, req.Cosignature); err != nil {
		return nil, denied(codes.PermissionDenied, "site %s: cosignature on checkpoint %d: %v", id.Name, req.Size, err)
	}
	if err := s.st.recordCosig(ctx, req.Size, id.Name); err != nil {
		return nil, err
	}
	return &pb.Ack{}, nil
}

// WitnessName is the cosignature key name of a site.
func WitnessName(site string) string { return "fedtune.witness/" + site }

// FetchAdapter streams a published adapter directory, file by file.
func (s *Server) FetchAdapter(req *pb.FetchAdapterRequest, stream pb.Federation_FetchAdapterServer) error {
	pubs, err := s.st.published(stream.Context())
	if err != nil {
		return err
	}
	if len(pubs) == 0 {
		return status.Error(codes.NotFound, "no adapter published yet")
	}
	p := pubs[len(pubs)-1]
	if req.Version != 0 {
		i := sort.Search(len(pubs), func(i int) bool { return pubs[i].Version >= req.Version })
		if i == len(pubs) || pubs[i].Version != req.Version {
			return status.Errorf(codes.NotFound, "adapter version %d is not published", req.Version)
		}
		p = pubs[i]
	}
	ents, err := os.ReadDir(p.Dir)
	if err != nil {
		return err
	}
	chunk := s.cfg.Limits.MaxMessageBytes / 2
	var files []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			files = append(files, e.Name())
		}
	}
	for i, name := range files {
		data, err := os.ReadFile(filepath.Join(p.Dir, name))
		if err != nil {
			return err
		}
		for off := 0; off == 0 || off < len(data); off += chunk {
			end := min(off+chunk, len(data))
			msg := &pb.AdapterFile{Version: p.Version, Name: name, Data: data[off:end]}
			if i == len(files)-1 && end == len(data) {
				msg.Last, msg.Digest = true, p.Digest
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
			if end == len(data) {
				break
			}
		}
	}
	return nil
}

// adminService implements the Admin service.
type adminService struct {
	s *Server
	pb.UnimplementedAdminServer
}

func (a *adminService) AddSite(ctx context.Context, req *pb.AddSiteRequest) (*pb.AddSiteResponse, error) {
	tok, exp, err := a.s.inviteSite(ctx, req.Site, site(ctx))
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &pb.AddSiteResponse{Site: req.Site, Token: tok, ExpiresUnix: exp.Unix()}, nil
}

func (a *adminService) RevokeSite(ctx context.Context, req *pb.RevokeSiteRequest) (*pb.Ack, error) {
	s := a.s
	if err := s.st.revokeSite(ctx, req.Site, req.Reason, s.now()); err != nil {
		if errors.Is(err, errUnknownSite) {
			return nil, status.Errorf(codes.NotFound, "site %q is not in the federation", req.Site)
		}
		return nil, err
	}
	by := site(ctx)
	idx, err := s.record(ctx, Event{Kind: audit.SiteRevoked, Actor: actorID(by), Auth: authMethod(by), Reason: req.Reason, Site: &audit.Site{ID: req.Site}})
	if err != nil {
		return nil, err
	}
	return &pb.Ack{AuditIndex: idx}, nil
}

func (a *adminService) OpenRound(ctx context.Context, _ *pb.OpenRoundRequest) (*pb.RoundStatus, error) {
	st, err := a.s.rounds.open(ctx, site(ctx))
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return st, nil
}

func (a *adminService) AbortRound(ctx context.Context, req *pb.AbortRoundRequest) (*pb.Ack, error) {
	d := a.s.rounds
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cur == nil || d.cur.cfg.Round != req.Round {
		return nil, status.Errorf(codes.FailedPrecondition, "round %d is not running", req.Round)
	}
	reason := req.Reason
	if reason == "" {
		reason = "aborted by " + site(ctx).String()
	}
	d.abortLocked(ctx, reason)
	return &pb.Ack{}, nil
}

func (a *adminService) ListState(ctx context.Context, _ *pb.ListStateRequest) (*pb.FederationState, error) {
	s := a.s
	rows, err := s.st.sites(ctx)
	if err != nil {
		return nil, err
	}
	out := &pb.FederationState{Federation: s.cfg.Federation, BaseModelDigest: s.baseDigest, Current: s.rounds.current()}
	for _, r := range rows {
		out.Sites = append(out.Sites, &pb.SiteState{Site: r.Name, Status: r.Status, CertNotAfterUnix: r.CertNotAfter, Rounds: uint32(r.Rounds)})
	}
	pubs, err := s.st.published(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range pubs {
		out.Published = append(out.Published, &pb.PublishedVersion{Version: p.Version, Round: p.Round, Digest: p.Digest, Dir: p.Dir})
	}
	out.AuditSize, _ = s.audit.Size()
	return out, nil
}

// auditService implements the read-only Audit service.
type auditService struct {
	s *Server
	pb.UnimplementedAuditServer
}

func (a *auditService) GetCheckpoint(ctx context.Context, req *pb.GetCheckpointRequest) (*pb.Checkpoint, error) {
	return checkpoint(ctx, a.s.audit, req)
}

func (a *auditService) GetEntries(ctx context.Context, req *pb.GetEntriesRequest) (*pb.GetEntriesResponse, error) {
	n := req.Limit
	if n == 0 || n > 1000 {
		n = 1000
	}
	ents, err := a.s.audit.Entries(ctx, req.Start, n)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	out := &pb.GetEntriesResponse{}
	for i, e := range ents {
		out.Entries = append(out.Entries, &pb.Entry{Index: req.Start + uint64(i), Data: e})
	}
	return out, nil
}

func (a *auditService) GetInclusionProof(ctx context.Context, req *pb.GetProofRequest) (*pb.Proof, error) {
	p, err := a.s.audit.InclusionProof(ctx, req.Index, req.Size)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &pb.Proof{Index: req.Index, Size: req.Size, Hashes: hashesToBytes(p)}, nil
}
