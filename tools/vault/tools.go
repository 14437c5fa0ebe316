//go:build tools

// Package tools pins the HashiCorp Vault server used by the integration
// tests of crypto/keystore. Build it with
//
//	go build -o vault github.com/hashicorp/vault
//
// from this directory.
package tools

import _ "github.com/hashicorp/vault"
