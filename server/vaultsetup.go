package server

import (
	"context"
	"fmt"
	"strings"

	"github.com/fedtune/fedtune/crypto/keystore"
	vault "github.com/hashicorp/vault/api"
)

// PrepareVault makes a Vault ready for a federation, as an operator would:
// it enables the Transit, KV v2 and PKI mounts of v that are missing,
// creates the PKI mount's root CA when it has none, and writes the PKI
// role that signs the federation's certificates. vs must hold a token
// allowed to do that (root, or an operator policy with sys/mounts); the
// aggregator and sites need none of it at run time.
//
// The PKI role takes names only from fedtune, never from the request:
// use_csr_common_name and use_csr_sans are off, the common name is kept
// out of the SANs, and URI SANs are limited to fedtune://*.
func PrepareVault(ctx context.Context, vs *keystore.VaultStore, v VaultSettings, caName string) error {
	c := vs.Client()
	mounts, err := c.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return fmt.Errorf("vault: list mounts (the token needs sys/mounts): %w", err)
	}
	for _, m := range []struct {
		path string
		in   vault.MountInput
	}{
		{v.TransitMount, vault.MountInput{Type: "transit", Description: "fedtune signing keys"}},
		{v.KVMount, vault.MountInput{Type: "kv", Options: map[string]string{"version": "2"}, Description: "fedtune secrets"}},
		{v.PKIMount, vault.MountInput{Type: "pki", Config: vault.MountConfigInput{MaxLeaseTTL: "87600h"}, Description: "fedtune federation CA"}},
	} {
		if have, ok := mounts[strings.TrimSuffix(m.path, "/")+"/"]; ok {
			if have.Type != m.in.Type {
				return fmt.Errorf("vault: mount %s is of type %s, want %s", m.path, have.Type, m.in.Type)
			}
			continue
		}
		if err := c.Sys().MountWithContext(ctx, m.path, &m.in); err != nil {
			return fmt.Errorf("vault: enable %s at %s: %w", m.in.Type, m.path, err)
		}
	}
	l := c.Logical()
	if _, err := vs.Roots(ctx); err != nil {
		if _, err := l.WriteWithContext(ctx, v.PKIMount+"/root/generate/internal", map[string]any{
			"common_name": caName, "ttl": "87600h", "key_type": "ec", "key_bits": 256,
		}); err != nil {
			return fmt.Errorf("vault: create the root CA of %s: %w", v.PKIMount, err)
		}
	}
	if _, err := l.WriteWithContext(ctx, v.PKIMount+"/roles/"+v.PKIRole, map[string]any{
		"allow_any_name":       true,
		"enforce_hostnames":    false,
		"allow_localhost":      true,
		"allow_ip_sans":        true,
		"allowed_uri_sans":     "fedtune://*",
		"use_csr_common_name":  false,
		"use_csr_sans":         false,
		"exclude_cn_from_sans": true,
		"cn_validations":       "disabled",
		"key_type":             "any",
		"server_flag":          true,
		"client_flag":          true,
		"max_ttl":              "2160h",
		"no_store":             false,
	}); err != nil {
		return fmt.Errorf("vault: write PKI role %s/roles/%s: %w", v.PKIMount, v.PKIRole, err)
	}
	return nil
}
