package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	pb "github.com/fedtune/fedtune/proto/fedtune/v1"
	"github.com/fedtune/fedtune/server"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

func init() {
	var configPath string
	serverCmd := &cobra.Command{
		Use:   "server --config FILE",
		Short: "Run the aggregator (gRPC over mutual TLS 1.3)",
		Long: `Run the aggregator. The configuration is validated at start; the first start
creates the data directory: encrypted key store (passphrase from FEDTUNE_PASSPHRASE
or FEDTUNE_PASSPHRASE_FILE), federation CA (ca.pem), SQLite state, audit log,
admin and auditor credentials (credentials/), and one enrollment token per
configured site (tokens/<site>.token). SIGINT or SIGTERM shut it down gracefully.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if configPath == "" {
				return fmt.Errorf("--config is required")
			}
			cfg, err := server.LoadConfig(configPath)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			srv, err := server.New(ctx, cfg, server.Options{})
			if err != nil {
				return err
			}
			defer srv.Close()
			return srv.Run(ctx)
		},
	}
	serverCmd.Flags().StringVar(&configPath, "config", "", "server configuration file (JSON, // comments allowed)")
	rootCmd.AddCommand(serverCmd)

	// fedtune admin: the central team's client for the Admin service.
	var addr, creds, serverName string
	var asJSON bool
	adminCmd := &cobra.Command{
		Use:   "admin",
		Short: "Administer a running federation (add/revoke sites, open/abort rounds, state)",
	}
	pf := adminCmd.PersistentFlags()
	pf.StringVar(&addr, "server", "127.0.0.1:7443", "aggregator address")
	pf.StringVar(&creds, "credentials", "", "directory with cert.pem, key.pem and ca.pem (the server writes DATA_DIR/credentials/admin)")
	pf.StringVar(&serverName, "server-name", "localhost", "name in the aggregator's certificate")
	pf.BoolVar(&asJSON, "json", false, "print JSON")
	dial := func() (pb.AdminClient, *grpc.ClientConn, error) {
		if creds == "" {
			return nil, nil, fmt.Errorf("--credentials is required")
		}
		cert, err := tls.LoadX509KeyPair(filepath.Join(creds, "cert.pem"), filepath.Join(creds, "key.pem"))
		if err != nil {
			return nil, nil, fmt.Errorf("credentials: %w", err)
		}
		caPEM, err := os.ReadFile(filepath.Join(creds, "ca.pem"))
		if err != nil {
			return nil, nil, fmt.Errorf("credentials: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(caPEM) {
			return nil, nil, fmt.Errorf("credentials: %s has no certificate", filepath.Join(creds, "ca.pem"))
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(server.ClientTLSConfig(&cert, roots, serverName))))
		if err != nil {
			return nil, nil, err
		}
		return pb.NewAdminClient(conn), conn, nil
	}
	call := func(f func(ctx context.Context, c pb.AdminClient) (any, error)) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			c, conn, err := dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			v, err := f(ctx, c)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%v\n", v)
			return nil
		}
	}
	var site, reason string
	var round uint64
	addSite := &cobra.Command{Use: "add-site --site NAME", Short: "Invite a site; prints its one-time enrollment token", Args: cobra.NoArgs,
		RunE: call(func(ctx context.Context, c pb.AdminClient) (any, error) {
			r, err := c.AddSite(ctx, &pb.AddSiteRequest{Site: site})
			if err != nil {
				return nil, err
			}
			return map[string]any{"site": r.Site, "token": r.Token, "expires": time.Unix(r.ExpiresUnix, 0).UTC()}, nil
		})}
	addSite.Flags().StringVar(&site, "site", "", "site name")
	revoke := &cobra.Command{Use: "revoke-site --site NAME --reason TEXT", Short: "Revoke a site and its certificate", Args: cobra.NoArgs,
		RunE: call(func(ctx context.Context, c pb.AdminClient) (any, error) {
			r, err := c.RevokeSite(ctx, &pb.RevokeSiteRequest{Site: site, Reason: reason})
			if err != nil {
				return nil, err
			}
			return map[string]any{"site": site, "revoked": true, "audit_index": r.AuditIndex}, nil
		})}
	revoke.Flags().StringVar(&site, "site", "", "site name")
	revoke.Flags().StringVar(&reason, "reason", "", "reason (goes into the audit log)")
	open := &cobra.Command{Use: "open-round", Short: "Open a round with every enrolled site", Args: cobra.NoArgs,
		RunE: call(func(ctx context.Context, c pb.AdminClient) (any, error) {
			r, err := c.OpenRound(ctx, &pb.OpenRoundRequest{})
			if err != nil {
				return nil, err
			}
			return map[string]any{"round": r.Round, "stage": r.Stage.String(), "sites": r.Config.GetSites()}, nil
		})}
	abort := &cobra.Command{Use: "abort-round --round N", Short: "Abort the running round", Args: cobra.NoArgs,
		RunE: call(func(ctx context.Context, c pb.AdminClient) (any, error) {
			_, err := c.AbortRound(ctx, &pb.AbortRoundRequest{Round: round, Reason: reason})
			return map[string]any{"round": round, "aborted": err == nil}, err
		})}
	abort.Flags().Uint64Var(&round, "round", 0, "round number")
	abort.Flags().StringVar(&reason, "reason", "", "reason (goes into the audit log)")
	state := &cobra.Command{Use: "state", Short: "Show sites, the current round and published versions", Args: cobra.NoArgs,
		RunE: call(func(ctx context.Context, c pb.AdminClient) (any, error) {
			r, err := c.ListState(ctx, &pb.ListStateRequest{})
			if err != nil {
				return nil, err
			}
			sites := []map[string]any{}
			for _, s := range r.Sites {
				sites = append(sites, map[string]any{"site": s.Site, "status": s.Status, "rounds": s.Rounds})
			}
			pubs := []map[string]any{}
			for _, p := range r.Published {
				pubs = append(pubs, map[string]any{"version": p.Version, "round": p.Round, "digest": p.Digest, "dir": p.Dir})
			}
			return map[string]any{"federation": r.Federation, "base_model_digest": r.BaseModelDigest, "sites": sites,
				"round": r.Current.GetRound(), "stage": r.Current.GetStage().String(), "published": pubs, "audit_size": r.AuditSize}, nil
		})}
	adminCmd.AddCommand(addSite, revoke, open, abort, state)
	rootCmd.AddCommand(adminCmd)
}
