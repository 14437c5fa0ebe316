package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fedtune/fedtune/crypto/keystore"
	"github.com/fedtune/fedtune/server"
	vault "github.com/hashicorp/vault/api"
)

// demoVault is the demo's use of HashiCorp Vault: as the operator (the
// token given to the demo) it enables the mounts it needs, creates every
// signing key in Transit, and gives the aggregator and each site its own
// short-lived token limited by the least-privilege policy of its role
// (keystore.VaultPolicy), so the run shows that those policies suffice.
type demoVault struct {
	vs       *keystore.VaultStore
	settings server.VaultSettings
	run      string
	server   map[string]any            // the server config's "keystore"
	sites    map[string]map[string]any // each site config's "keystore"
	siteKeys map[string]string         // site → identity key
	tokens   []string
	policies []string
}

// newDemoVault connects with the operator's token (file or VAULT_TOKEN)
// and prepares keys, policies and tokens for the aggregator and sites;
// each process's token is written to <dir>/<process>/vault-token (0600).
func newDemoVault(ctx context.Context, o demoOptions, dir string, sites []string, logf func(string, ...any)) (*demoVault, error) {
	if o.vaultAddr == "" {
		return nil, errors.New("--keystore vault needs --vault-addr (or VAULT_ADDR)")
	}
	if o.vaultTokenFile == "" && os.Getenv("VAULT_TOKEN") == "" {
		return nil, errors.New("--keystore vault needs a Vault token: set VAULT_TOKEN or --vault-token-file")
	}
	v := server.VaultSettings{Address: o.vaultAddr, CACertFile: o.vaultCACert, TokenFile: o.vaultTokenFile, KVPrefix: "fedtune-demo"}
	v.SetDefaults()
	if err := v.Check("vault"); err != nil {
		return nil, fmt.Errorf("--keystore vault: %w", err)
	}
	vs, err := v.Open(ctx, logf)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 4)
	rand.Read(b)
	d := &demoVault{vs: vs, settings: v, run: hex.EncodeToString(b), sites: map[string]map[string]any{}, siteKeys: map[string]string{}}
	if err := d.prepare(ctx, dir, sites, logf); err != nil {
		d.Close(ctx)
		return nil, err
	}
	return d, nil
}

func (d *demoVault) prepare(ctx context.Context, dir string, sites []string, logf func(string, ...any)) error {
	v := d.settings
	if err := server.PrepareVault(ctx, d.vs, v, "fedtune demo federation CA"); err != nil {
		return err
	}
	logf("vault %s: mounts %s (transit), %s (kv v2), %s (pki, role %s) ready", v.Address, v.TransitMount, v.KVMount, v.PKIMount, v.PKIRole)
	scfg, err := v.StoreConfig()
	if err != nil {
		return err
	}
	prefix := "demo-" + d.run + "-"
	ckpt, prov := prefix+"audit-checkpoint", prefix+"provenance"
	for _, k := range []string{ckpt, prov} {
		if err := d.vs.CreateSigningKey(ctx, k, keystore.Ed25519); err != nil {
			return err
		}
	}
	aggPolicy, err := keystore.VaultPolicy("aggregator", scfg, ckpt)
	if err != nil {
		return err
	}
	// The provenance key: sign and read its public key, nothing more.
	provPolicy, err := keystore.VaultPolicy("aggregator", scfg, prov)
	if err != nil {
		return err
	}
	aggPolicy += "\n\n" + transitStanzas(provPolicy, scfg.TransitMount, prov)
	tokFile, err := d.issueToken(ctx, "aggregator", aggPolicy, filepath.Join(dir, "aggregator"))
	if err != nil {
		return err
	}
	d.server = map[string]any{"type": "vault", "vault": d.processSettings(tokFile), "checkpoint_key": ckpt, "provenance_key": prov}
	for _, s := range sites {
		key := prefix + s
		if err := d.vs.CreateSigningKey(ctx, key, keystore.Ed25519); err != nil {
			return err
		}
		pol, err := keystore.VaultPolicy("site", scfg, key)
		if err != nil {
			return err
		}
		tokFile, err := d.issueToken(ctx, s, pol, filepath.Join(dir, s))
		if err != nil {
			return err
		}
		d.siteKeys[s] = key
		d.sites[s] = map[string]any{"type": "vault", "vault": d.processSettings(tokFile), "identity_key": key}
	}
	logf("vault: %d Transit keys (%s*), one token per process with its role's policy", 2+len(sites), prefix)
	return nil
}

// transitStanzas keeps the Transit paths of key from a generated policy.
func transitStanzas(policy, mount, key string) string {
	var out []string
	for _, st := range strings.Split(policy, "\n\n") {
		if strings.Contains(st, `"`+mount+"/sign/"+key+`"`) || strings.Contains(st, `"`+mount+"/keys/"+key+`"`) {
			var keep []string
			for _, l := range strings.Split(st, "\n") {
				if !strings.HasPrefix(l, "#") {
					keep = append(keep, l)
				}
			}
			out = append(out, strings.Join(keep, "\n"))
		}
	}
	return strings.Join(out, "\n\n")
}

func (d *demoVault) processSettings(tokenFile string) server.VaultSettings {
	v := d.settings
	v.TokenFile = tokenFile
	return v
}

// issueToken writes policy as fedtune-demo-<run>-<who> and creates a
// token limited to it (and Vault's default policy, which lets a token
// look itself up and renew itself).
func (d *demoVault) issueToken(ctx context.Context, who, policy, dir string) (string, error) {
	c := d.vs.Client()
	name := "fedtune-demo-" + d.run + "-" + who
	if err := c.Sys().PutPolicyWithContext(ctx, name, policy); err != nil {
		return "", fmt.Errorf("vault: write policy %s: %w", name, err)
	}
	d.policies = append(d.policies, name)
	sec, err := c.Auth().Token().CreateWithContext(ctx, &vault.TokenCreateRequest{Policies: []string{name}, TTL: "1h", DisplayName: name})
	if err != nil {
		return "", fmt.Errorf("vault: create token for %s: %w", who, err)
	}
	if sec == nil || sec.Auth == nil || sec.Auth.ClientToken == "" {
		return "", fmt.Errorf("vault: create token for %s: no token in the response", who)
	}
	d.tokens = append(d.tokens, sec.Auth.ClientToken)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "vault-token")
	if err := os.WriteFile(path, []byte(sec.Auth.ClientToken+"\n"), 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// putEnrollmentTokens moves each site's one-time enrollment token from the
// aggregator's tokens directory into the site's Vault KV secret
// <identity_key>.enrollment-token, where the site reads it.
func (d *demoVault) putEnrollmentTokens(ctx context.Context, tokensDir string) error {
	for s, key := range d.siteKeys {
		p := filepath.Join(tokensDir, s+".token")
		tok, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := d.vs.PutSecret(ctx, key+".enrollment-token", []byte(strings.TrimSpace(string(tok)))); err != nil {
			return err
		}
	}
	return nil
}

// Close revokes the processes' tokens, deletes their policies and ends
// the operator session. The Transit keys stay (fedtune never deletes a
// key: old signatures must keep verifying).
func (d *demoVault) Close(ctx context.Context) {
	c := d.vs.Client()
	for _, t := range d.tokens {
		c.Auth().Token().RevokeTreeWithContext(ctx, t)
	}
	for _, p := range d.policies {
		c.Sys().DeletePolicyWithContext(ctx, p)
	}
	d.vs.Close()
}
