package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/fedtune/fedtune/crypto/keystore"
	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/term"
)

func init() {
	rootCmd.AddCommand(newKeysCmd())
}

// keysFlags are the flags every `fedtune keys` subcommand shares.
type keysFlags struct {
	backend string
	dir     string
	asJSON  bool

	vaultAddr, vaultNamespace, vaultCACert, vaultServerName string
	vaultTokenFile                                          string
	approleRoleID, approleSecretIDFile, approleMount        string
	transitMount, kvMount, kvPrefix, pkiMount, pkiRole      string
}

func newKeysCmd() *cobra.Command {
	kf := &keysFlags{}
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage signing keys in the file key store or in HashiCorp Vault",
		Long: `Manage fedtune's long-term signing keys (the aggregator's checkpoint key, each
site's identity key) in the encrypted file key store (default) or in Vault Transit.

The file store's passphrase comes from FEDTUNE_PASSPHRASE or the file named by
FEDTUNE_PASSPHRASE_FILE, or is asked for on the terminal. Vault credentials come
from VAULT_TOKEN, --vault-token-file, or AppRole (--vault-approle-role-id and
--vault-approle-secret-id-file). Private keys are never printed.`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&kf.backend, "keystore", "file", "key store: file or vault")
	pf.StringVar(&kf.dir, "dir", "fedtune-data/keys", "file key store directory")
	pf.BoolVar(&kf.asJSON, "json", false, "print JSON")
	pf.StringVar(&kf.vaultAddr, "vault-addr", os.Getenv("VAULT_ADDR"), "Vault address (default $VAULT_ADDR)")
	pf.StringVar(&kf.vaultNamespace, "vault-namespace", os.Getenv("VAULT_NAMESPACE"), "Vault Enterprise namespace (default $VAULT_NAMESPACE)")
	pf.StringVar(&kf.vaultCACert, "vault-cacert", os.Getenv("VAULT_CACERT"), "PEM file of the CA that signed Vault's TLS certificate (default $VAULT_CACERT)")
	pf.StringVar(&kf.vaultServerName, "vault-tls-server-name", "", "name to check in Vault's TLS certificate, if not the address's host")
	pf.StringVar(&kf.vaultTokenFile, "vault-token-file", "", "file holding the Vault token (default: $VAULT_TOKEN)")
	pf.StringVar(&kf.approleRoleID, "vault-approle-role-id", "", "log in with AppRole using this role ID")
	pf.StringVar(&kf.approleSecretIDFile, "vault-approle-secret-id-file", "", "file holding the AppRole secret ID")
	pf.StringVar(&kf.approleMount, "vault-approle-mount", "approle", "AppRole auth mount path")
	pf.StringVar(&kf.transitMount, "vault-transit-mount", "transit", "Transit engine mount path")
	pf.StringVar(&kf.kvMount, "vault-kv-mount", "secret", "KV version 2 mount path")
	pf.StringVar(&kf.kvPrefix, "vault-kv-prefix", "fedtune", "path of fedtune's secrets under the KV mount")
	pf.StringVar(&kf.pkiMount, "vault-pki-mount", "pki", "PKI engine mount path")
	pf.StringVar(&kf.pkiRole, "vault-pki-role", "fedtune", "default PKI role")

	cmd.AddCommand(keysInitCmd(kf), keysCreateCmd(kf), keysListCmd(kf), keysRotateCmd(kf),
		keysExportPublicCmd(kf), keysVaultPolicyCmd(kf))
	return cmd
}

// vaultConfig builds the Vault configuration from the flags. It reads
// credentials from files or the environment, never from the command line.
func (kf *keysFlags) vaultConfig() (keystore.VaultConfig, error) {
	cfg := keystore.VaultConfig{
		Address: kf.vaultAddr, Namespace: kf.vaultNamespace,
		CACertFile: kf.vaultCACert, TLSServerName: kf.vaultServerName,
		TransitMount: kf.transitMount, KVMount: kf.kvMount, KVPrefix: kf.kvPrefix,
		PKIMount: kf.pkiMount, PKIRole: kf.pkiRole,
	}
	switch {
	case kf.approleRoleID != "":
		if kf.approleSecretIDFile == "" {
			return cfg, errors.New("--vault-approle-role-id needs --vault-approle-secret-id-file")
		}
		sid, err := readCredentialFile(kf.approleSecretIDFile)
		if err != nil {
			return cfg, err
		}
		cfg.AppRole = &keystore.AppRoleAuth{MountPath: kf.approleMount, RoleID: kf.approleRoleID, SecretID: sid}
	case kf.vaultTokenFile != "":
		tok, err := readCredentialFile(kf.vaultTokenFile)
		if err != nil {
			return cfg, err
		}
		cfg.Token = tok
	default:
		cfg.Token = os.Getenv("VAULT_TOKEN")
	}
	return cfg, nil
}

// readCredentialFile reads a token or secret ID, which must not be
// readable by other users.
func readCredentialFile(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", &keystore.PermissionError{Path: path, Mode: st.Mode()}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

// passphrase returns the file store passphrase from the environment or,
// on a terminal, from a prompt (asked twice when confirm is set).
func passphrase(stderr io.Writer, confirm bool) ([]byte, error) {
	p, err := keystore.PassphraseFromEnv()
	if !errors.Is(err, keystore.ErrNoPassphrase) {
		return p, err
	}
	tty, terr := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if terr != nil || !term.IsTerminal(int(tty.Fd())) {
		return nil, err
	}
	defer tty.Close()
	fmt.Fprint(tty, "key store passphrase: ")
	p, err = term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	if err != nil {
		return nil, fmt.Errorf("reading passphrase: %w", err)
	}
	if len(p) == 0 {
		return nil, errors.New("empty passphrase")
	}
	if confirm {
		fmt.Fprint(tty, "again: ")
		q, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		if err != nil {
			return nil, fmt.Errorf("reading passphrase: %w", err)
		}
		if !bytes.Equal(p, q) {
			return nil, errors.New("the passphrases differ")
		}
	}
	return p, nil
}

// open opens the configured store; the returned function releases it.
func (kf *keysFlags) open(cmd *cobra.Command) (keystore.Store, func(), error) {
	switch kf.backend {
	case "file":
		p, err := passphrase(cmd.ErrOrStderr(), false)
		if err != nil {
			return nil, nil, err
		}
		s, err := keystore.OpenFileStore(kf.dir, p)
		clear(p)
		if err != nil {
			return nil, nil, err
		}
		return s, func() {}, nil
	case "vault":
		cfg, err := kf.vaultConfig()
		if err != nil {
			return nil, nil, err
		}
		s, err := keystore.NewVaultStore(cmd.Context(), cfg)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { s.Close() }, nil
	}
	return nil, nil, fmt.Errorf("--keystore %q: want file or vault", kf.backend)
}

func (kf *keysFlags) where() string {
	if kf.backend == "vault" {
		return "vault " + kf.vaultAddr + " (" + kf.transitMount + ")"
	}
	return kf.dir
}

// keyJSON is how --json shows a key.
type keyJSON struct {
	Name           string `json:"name"`
	Algorithm      string `json:"algorithm"`
	CurrentVersion int    `json:"current_version"`
	Versions       []int  `json:"versions"`
}

func toKeyJSON(k keystore.KeyInfo) keyJSON {
	return keyJSON{Name: k.Name, Algorithm: string(k.Algorithm), CurrentVersion: k.CurrentVersion, Versions: k.Versions}
}

func keysInitCmd(kf *keysFlags) *cobra.Command {
	var names []string
	var alg string
	c := &cobra.Command{
		Use:   "init [--key NAME]...",
		Short: "Create a file key store (or, with --keystore vault, check access) and its first keys",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, err := keystore.ParseAlgorithm(alg)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			var s keystore.Store
			release := func() {}
			if kf.backend == "file" {
				p, err := passphrase(cmd.ErrOrStderr(), true)
				if err != nil {
					return err
				}
				fs, err := keystore.InitFileStore(kf.dir, p)
				clear(p)
				if err != nil {
					return err
				}
				s = fs
			} else {
				if s, release, err = kf.open(cmd); err != nil {
					return err
				}
			}
			defer release()
			created, err := createKeys(ctx, s, names, a)
			if err != nil {
				return err
			}
			if kf.asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"keystore": kf.backend, "location": kf.where(), "created": created})
			}
			if kf.backend == "file" {
				fmt.Fprintf(cmd.OutOrStdout(), "initialized key store %s\n", kf.dir)
			}
			for _, k := range created {
				fmt.Fprintf(cmd.OutOrStdout(), "created key %s (%s, version %d)\n", k.Name, k.Algorithm, k.CurrentVersion)
			}
			return nil
		},
	}
	c.Flags().StringSliceVar(&names, "key", nil, "create a signing key of this name (repeatable)")
	c.Flags().StringVar(&alg, "alg", "ed25519", "algorithm of the keys: ed25519 or ecdsa-p256")
	return c
}

func createKeys(ctx context.Context, s keystore.Store, names []string, alg keystore.Algorithm) ([]keyJSON, error) {
	created := []keyJSON{}
	for _, n := range names {
		if err := s.CreateSigningKey(ctx, n, alg); err != nil {
			return created, err
		}
		created = append(created, keyJSON{Name: n, Algorithm: string(alg), CurrentVersion: 1, Versions: []int{1}})
	}
	return created, nil
}

func keysCreateCmd(kf *keysFlags) *cobra.Command {
	var alg string
	c := &cobra.Command{
		Use:   "create NAME...",
		Short: "Create signing keys in an existing key store",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := keystore.ParseAlgorithm(alg)
			if err != nil {
				return err
			}
			s, release, err := kf.open(cmd)
			if err != nil {
				return err
			}
			defer release()
			created, err := createKeys(cmd.Context(), s, args, a)
			if err != nil {
				return err
			}
			if kf.asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"created": created})
			}
			for _, k := range created {
				fmt.Fprintf(cmd.OutOrStdout(), "created key %s (%s, version 1)\n", k.Name, k.Algorithm)
			}
			return nil
		},
	}
	c.Flags().StringVar(&alg, "alg", "ed25519", "algorithm: ed25519 or ecdsa-p256")
	return c
}

func keysListCmd(kf *keysFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List signing keys with their algorithm and versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, release, err := kf.open(cmd)
			if err != nil {
				return err
			}
			defer release()
			keys, err := s.List(cmd.Context())
			if err != nil {
				return err
			}
			if kf.asJSON {
				out := []keyJSON{}
				for _, k := range keys {
					out = append(out, toKeyJSON(k))
				}
				return writeJSON(cmd.OutOrStdout(), map[string]any{"keystore": kf.backend, "location": kf.where(), "keys": out})
			}
			if len(keys) == 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "no keys in %s\n", kf.where())
				return nil
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tALGORITHM\tCURRENT\tVERSIONS")
			for _, k := range keys {
				vs := make([]string, len(k.Versions))
				for i, v := range k.Versions {
					vs[i] = fmt.Sprint(v)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", k.Name, k.Algorithm, k.CurrentVersion, strings.Join(vs, ","))
			}
			return tw.Flush()
		},
	}
}

func keysRotateCmd(kf *keysFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rotate NAME",
		Short: "Add a new version of a key and make it current (old versions still verify)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, release, err := kf.open(cmd)
			if err != nil {
				return err
			}
			defer release()
			v, err := s.Rotate(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if kf.asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"name": args[0], "current_version": v})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rotated %s: version %d is current\n", args[0], v)
			return nil
		},
	}
}

// publicKeyJSON is how --json shows a public key.
type publicKeyJSON struct {
	Name            string `json:"name"`
	Version         int    `json:"version"`
	Algorithm       string `json:"algorithm"`
	PublicKeyPEM    string `json:"public_key_pem"`
	NoteVerifierKey string `json:"note_verifier_key,omitempty"`
}

func keysExportPublicCmd(kf *keysFlags) *cobra.Command {
	var version int
	var format, noteName string
	c := &cobra.Command{
		Use:   "export-public NAME",
		Short: "Print the public keys of a key (all versions, or --version N)",
		Long: `Print the public keys of a key as PEM (X.509 SubjectPublicKeyInfo), or with
--format note as signed-note verifier keys (<name>+<hash>+<key>, Ed25519 only),
the form audit log verifiers take. --note-name sets the note key name (the log
origin); it defaults to the key name.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if format != "pem" && format != "note" {
				return fmt.Errorf("--format %q: want pem or note", format)
			}
			s, release, err := kf.open(cmd)
			if err != nil {
				return err
			}
			defer release()
			pubs, err := s.PublicKeys(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if noteName == "" {
				noteName = args[0]
			}
			var out []publicKeyJSON
			for _, p := range pubs {
				if version != 0 && p.Version != version {
					continue
				}
				pemBytes, err := keystore.MarshalPublicKeyPEM(p.Key)
				if err != nil {
					return err
				}
				pj := publicKeyJSON{Name: p.Name, Version: p.Version, Algorithm: string(p.Algorithm), PublicKeyPEM: string(pemBytes)}
				if ek, ok := p.Key.(ed25519.PublicKey); ok {
					if pj.NoteVerifierKey, err = note.NewEd25519VerifierKey(noteName, ek); err != nil {
						return fmt.Errorf("--note-name %q: %w", noteName, err)
					}
				} else if format == "note" {
					return fmt.Errorf("key %s is %s: signed-note verifier keys are Ed25519 only", p.Name, p.Algorithm)
				}
				out = append(out, pj)
			}
			if len(out) == 0 {
				return fmt.Errorf("key %s has no version %d", args[0], version)
			}
			if kf.asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"public_keys": out})
			}
			for _, p := range out {
				if format == "note" {
					fmt.Fprintln(cmd.OutOrStdout(), p.NoteVerifierKey)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s version %d (%s)\n%s", p.Name, p.Version, p.Algorithm, p.PublicKeyPEM)
			}
			return nil
		},
	}
	c.Flags().IntVar(&version, "version", 0, "only this version (default: all)")
	c.Flags().StringVar(&format, "format", "pem", "pem or note")
	c.Flags().StringVar(&noteName, "note-name", "", "signed-note key name (default: the key name)")
	return c
}

func keysVaultPolicyCmd(kf *keysFlags) *cobra.Command {
	var role, key string
	c := &cobra.Command{
		Use:   "vault-policy --role aggregator|site|operator [--key NAME]",
		Short: "Print the least-privilege Vault policy (HCL) for a role",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := keystore.VaultConfig{TransitMount: kf.transitMount, KVMount: kf.kvMount, KVPrefix: kf.kvPrefix, PKIMount: kf.pkiMount, PKIRole: kf.pkiRole}
			p, err := keystore.VaultPolicy(role, cfg, key)
			if err != nil {
				return err
			}
			if kf.asJSON {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"role": role, "key": key, "policy": p})
			}
			fmt.Fprintln(cmd.OutOrStdout(), p)
			return nil
		},
	}
	c.Flags().StringVar(&role, "role", "", "aggregator, site or operator")
	c.Flags().StringVar(&key, "key", "", "the role's signing key (aggregator, site)")
	return c
}
