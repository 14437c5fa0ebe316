package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/crypto/keystore"
	"github.com/fedtune/fedtune/crypto/secagg"
	pb "github.com/fedtune/fedtune/proto/fedtune/v1"
	"github.com/fedtune/fedtune/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// dialAs connects with the credentials in dir (cert.pem, key.pem, ca.pem),
// or with no client certificate when dir is "".
func (f *federation) dialAs(t *testing.T, dir string) *grpc.ClientConn {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(f.cfg.DataDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	var cert *tls.Certificate
	if dir != "" {
		c, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
		if err != nil {
			t.Fatal(err)
		}
		cert = &c
	}
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(server.ClientTLSConfig(cert, roots, "localhost"))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want code %s", what, err, code)
	}
	if s := status.Convert(err).Message(); s == "" {
		t.Fatalf("%s: empty status message", what)
	}
}

func deniedEntries(es []*audit.Entry) []*audit.Entry {
	var out []*audit.Entry
	for _, e := range es {
		if e.Kind == audit.AccessDenied {
			out = append(out, e)
		}
	}
	return out
}

// Every refusal at the gRPC edge has a clear status and an access.denied
// audit entry.
func TestDenials(t *testing.T) {
	f := newFederation(t, []string{"site-a", "site-b"}, func(c *server.Config) { c.Limits.MaxMessageBytes = 16 << 10 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := f.siteConfig("site-a", 40)
	token, _ := os.ReadFile(cfg.TokenFile)
	c, err := New(ctx, cfg, Options{Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.enroll(ctx); err != nil {
		t.Fatal(err)
	}
	fed := c.fed
	denials := 0
	check := func(what string, err error, code codes.Code) {
		t.Helper()
		wantCode(t, what, err, code)
		denials++
	}

	// Unenrolled caller: no certificate.
	anon := pb.NewFederationClient(f.dialAs(t, ""))
	_, err = anon.GetRound(ctx, &pb.GetRoundRequest{})
	check("no certificate", err, codes.Unauthenticated)

	// Replayed enrollment token.
	_, err = anon.Enroll(ctx, &pb.EnrollRequest{Site: "site-a", Token: string(token), Csr: mustCSR(t, c), IdentityKey: mustIdentity(t, c)})
	check("replayed token", err, codes.PermissionDenied)

	// Wrong token for a site that is invited.
	_, err = anon.Enroll(ctx, &pb.EnrollRequest{Site: "site-b", Token: "not-the-token", Csr: mustCSR(t, c), IdentityKey: mustIdentity(t, c)})
	check("wrong token", err, codes.PermissionDenied)

	// Wrong role: a site calling the Admin service.
	_, err = pb.NewAdminClient(c.conn).AddSite(ctx, &pb.AddSiteRequest{Site: "intruder"})
	check("site calls Admin", err, codes.PermissionDenied)

	// Wrong role: the auditor may not open rounds.
	auditor := pb.NewAdminClient(f.dialAs(t, filepath.Join(f.cfg.DataDir, "credentials", "auditor")))
	_, err = auditor.OpenRound(ctx, &pb.OpenRoundRequest{})
	check("auditor opens round", err, codes.PermissionDenied)

	// Oversized message.
	_, err = fed.SubmitSecAgg(ctx, &pb.SecAggMessage{Round: 1, Stage: pb.Stage_STAGE_ADVERTISE_KEYS, Payload: make([]byte, 20<<10)})
	check("oversized message", err, codes.ResourceExhausted)

	// Oversized masked-input upload: more words than the round takes. Open a
	// round first (site-b enrolls so that min_sites is met).
	cb, err := New(ctx, f.siteConfig("site-b", 40), Options{Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if err := cb.enroll(ctx); err != nil {
		t.Fatal(err)
	}
	admin := pb.NewAdminClient(f.dialAs(t, filepath.Join(f.cfg.DataDir, "credentials", "admin")))
	st, err := admin.OpenRound(ctx, &pb.OpenRoundRequest{})
	if err != nil {
		t.Fatal(err)
	}
	up, err := fed.UploadMaskedInput(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hdr := mustMaskedHeader(t, st.Config, int(st.Config.PaddedLen)+1)
	up.Send(&pb.MaskedInputChunk{Round: st.Round, Header: hdr, TotalWords: st.Config.PaddedLen + 1, Words: make([]uint32, 8)})
	_, err = up.CloseAndRecv()
	check("oversized upload", err, codes.InvalidArgument)

	// Revoked site.
	if _, err := admin.RevokeSite(ctx, &pb.RevokeSiteRequest{Site: "site-a", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	_, err = fed.GetRound(ctx, &pb.GetRoundRequest{})
	check("revoked site", err, codes.PermissionDenied)

	es := f.auditEntries(t)
	d := deniedEntries(es)
	if len(d) != denials {
		for _, e := range d {
			t.Logf("%s %s %s", e.Actor.ID, e.Reason, e.Objects)
		}
		t.Fatalf("%d access.denied entries, want %d", len(d), denials)
	}
	for _, e := range d {
		if e.Outcome != audit.OutcomeDenied || e.Reason == "" || len(e.Objects) != 1 {
			t.Errorf("access.denied entry without outcome/reason/method: %+v", e)
		}
	}
	if count(es, audit.SiteRevoked) != 1 {
		t.Errorf("no site.revoked entry")
	}
}

func mustCSR(t *testing.T, c *Client) []byte {
	t.Helper()
	csr, err := keystore.NewCSR(c.tlsKey, keystore.CertRequest{CommonName: "x"})
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func mustIdentity(t *testing.T, c *Client) []byte {
	t.Helper()
	b, err := x509.MarshalPKIXPublicKey(c.ident.Public())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustMaskedHeader(t *testing.T, cfg *pb.RoundConfig, n int) []byte {
	t.Helper()
	m := &secagg.MaskedInput{Round: cfg.Round, Site: 1, VectorLen: uint32(n), Sig: make([]byte, 64)}
	h := m.MarshalHeader()
	if _, err := secagg.UnmarshalMaskedInputHeader(h); err != nil {
		t.Fatal(err)
	}
	return h
}
