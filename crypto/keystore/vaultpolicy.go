package keystore

import (
	"fmt"
	"strings"
)

// VaultRoles are the roles [VaultPolicy] knows, in the order the docs list
// them.
var VaultRoles = []string{"aggregator", "site", "operator"}

// VaultPolicy returns the least-privilege Vault policy (HCL) for a fedtune
// role, for the mounts of cfg:
//
//   - "aggregator": sign with its checkpoint key keyName (update on
//     transit/sign/<keyName>, nothing else on Transit except reading that
//     key's public keys) and have site certificates signed by the PKI role.
//   - "site": sign with its identity key keyName the same way, and read
//     and write its own secrets <KVPrefix>/<keyName>.* in KV v2.
//   - "operator": what fedtune keys needs: create, list, read and rotate
//     Transit keys (never export or delete them), manage fedtune's KV
//     secrets, revoke certificates.
//
// Reading transit/keys/<name> returns public keys and metadata only, since
// fedtune creates keys non-exportable.
func VaultPolicy(role string, cfg VaultConfig, keyName string) (string, error) {
	c := cfg.withDefaults()
	if role != "operator" {
		if err := checkName(keyName); err != nil {
			return "", err
		}
	}
	var b strings.Builder
	path := func(p string, caps ...string) {
		fmt.Fprintf(&b, "path %q {\n  capabilities = [%s]\n}\n\n", p, `"`+strings.Join(caps, `", "`)+`"`)
	}
	switch role {
	case "aggregator":
		fmt.Fprintf(&b, "# fedtune aggregator: sign checkpoints with %s; sign site certificates.\n", keyName)
		path(c.TransitMount+"/sign/"+keyName, "update")
		path(c.TransitMount+"/keys/"+keyName, "read")
		path(c.PKIMount+"/sign/"+c.PKIRole, "update")
	case "site":
		fmt.Fprintf(&b, "# fedtune site: sign with identity key %s; its own secrets.\n", keyName)
		path(c.TransitMount+"/sign/"+keyName, "update")
		path(c.TransitMount+"/keys/"+keyName, "read")
		path(c.KVMount+"/data/"+c.KVPrefix+"/"+keyName+".*", "create", "read", "update")
	case "operator":
		b.WriteString("# fedtune operator: fedtune keys init|list|rotate|export-public.\n")
		path(c.TransitMount+"/keys", "list")
		path(c.TransitMount+"/keys/*", "create", "read", "update")
		path(c.TransitMount+"/keys/+/rotate", "update")
		path(c.TransitMount+"/keys/+/config", "deny")
		path(c.TransitMount+"/keys/+/trim", "deny")
		path(c.TransitMount+"/export/*", "deny")
		path(c.TransitMount+"/backup/*", "deny")
		path(c.KVMount+"/data/"+c.KVPrefix+"/*", "create", "read", "update")
		path(c.KVMount+"/metadata/"+c.KVPrefix+"/*", "list", "read")
		path(c.PKIMount+"/revoke", "update")
	default:
		return "", fmt.Errorf("keystore: unknown Vault role %q (want one of %s)", role, strings.Join(VaultRoles, ", "))
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}
