package client

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	pb "github.com/fedtune/fedtune/proto/fedtune/v1"
	"github.com/fedtune/fedtune/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// A site renews its certificate in the second half of its lifetime; the old
// certificate stops working at once. The metrics endpoint and the health
// service report the server's state.
func TestRenewalMetricsHealth(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	maddr := l.Addr().String()
	l.Close()
	f := newFederation(t, []string{"site-a"}, func(c *server.Config) {
		c.CertTTL = server.Duration(10 * time.Minute)
		c.MetricsListen = maddr
		c.Round.MinSites, c.Round.Threshold = 2, 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := f.siteConfig("site-a", 40)
	now := time.Now()
	c, err := New(ctx, cfg, Options{Passphrase: pass, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.enroll(ctx); err != nil {
		t.Fatal(err)
	}
	oldPEM, _ := os.ReadFile(c.path("cert.pem"))
	if err := c.renewIfDue(ctx); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(c.path("cert.pem")); string(b) != string(oldPEM) {
		t.Fatal("renewed a fresh certificate")
	}
	now = now.Add(6 * time.Minute)
	if err := c.renewIfDue(ctx); err != nil {
		t.Fatal(err)
	}
	newPEM, _ := os.ReadFile(c.path("cert.pem"))
	if string(newPEM) == string(oldPEM) {
		t.Fatal("certificate not renewed")
	}
	if _, err := c.fed.GetRound(ctx, &pb.GetRoundRequest{WaitMs: 1}); err != nil {
		t.Fatalf("renewed certificate refused: %v", err)
	}
	// The old certificate is refused.
	blk, _ := pem.Decode(oldPEM)
	old := tls.Certificate{Certificate: [][]byte{blk.Bytes}, PrivateKey: c.tlsKey}
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(server.ClientTLSConfig(&old, c.roots, "localhost"))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = pb.NewFederationClient(conn).GetRound(ctx, &pb.GetRoundRequest{WaitMs: 1})
	wantCode(t, "old certificate", err, codes.PermissionDenied)

	// Health: SERVING, for anyone.
	hs, err := healthpb.NewHealthClient(f.dialAs(t, "")).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hs.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hs, err)
	}
	// Metrics: Prometheus text with the denial just counted.
	resp, err := http.Get("http://" + maddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`fedtune_denied_total{code="PermissionDenied"} 1`, `fedtune_rpcs_total{method="/fedtune.v1.Federation/Renew"} 1`, "# TYPE fedtune_round gauge"} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("metrics lack %q:\n%s", want, body)
		}
	}
}

// Calls beyond an identity's token bucket are refused with
// ResourceExhausted and audited; WatchRounds streams the round status.
func TestRateLimitAndWatch(t *testing.T) {
	f := newFederation(t, []string{"site-a"}, func(c *server.Config) {
		c.Limits.RatePerSecond, c.Limits.Burst = 0.001, 3
		c.Round.MinSites, c.Round.Threshold = 2, 2
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := New(ctx, f.siteConfig("site-a", 40), Options{Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.enroll(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := c.fed.WatchRounds(ctx, &pb.WatchRoundsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := w.Recv(); err != nil || st.Round != 0 {
		t.Fatalf("watch: %v %v", st, err)
	}
	var last error
	for i := 0; i < 3; i++ {
		_, last = c.fed.GetRound(ctx, &pb.GetRoundRequest{WaitMs: 1})
	}
	wantCode(t, "over the rate limit", last, codes.ResourceExhausted)
	es := f.auditEntries(t)
	d := deniedEntries(es)
	if len(d) == 0 || !strings.Contains(d[len(d)-1].Reason, "rate limit") {
		t.Fatalf("rate-limit denial not audited: %v", d)
	}
}
