package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedtune/fedtune/crypto/keystore"
	"github.com/fedtune/fedtune/server"
	"github.com/fedtune/fedtune/synth"
)

// fedtune admin talks to a running aggregator with the admin credentials
// it wrote; a site certificate-less caller cannot.
func TestAdminCommands(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	if err := synth.InitBaseModel(base, synth.DefaultModelOptions()); err != nil {
		t.Fatal(err)
	}
	pass := []byte("admin test")
	cfg := &server.Config{Federation: "adm", DataDir: filepath.Join(dir, "data"), BaseModel: base, Sites: []string{"a"},
		Round: server.RoundConfig{NoiseMultiplier: 1, Steps: 1, Threshold: 2, MinSites: 2}}
	cfg.SetDefaults()
	if _, err := keystore.InitFileStoreWith(cfg.Keystore.Dir, pass, keystore.FileOptions{ScryptLogN: 10}); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(context.Background(), cfg, server.Options{Passphrase: pass})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Serve(ctx, lis) }()
	defer func() { cancel(); <-done }()

	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		rootCmd.SetOut(&out)
		rootCmd.SetArgs(append(args, "--server", lis.Addr().String(), "--credentials", filepath.Join(cfg.DataDir, "credentials", "admin"), "--json"))
		err := rootCmd.Execute()
		return out.String(), err
	}
	out, err := run("admin", "add-site", "--site", "b")
	if err != nil {
		t.Fatal(err)
	}
	var added map[string]any
	if err := json.Unmarshal([]byte(out), &added); err != nil || added["site"] != "b" || len(added["token"].(string)) < 40 {
		t.Fatalf("add-site: %s %v", out, err)
	}
	out, err = run("admin", "state")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Federation string `json:"federation"`
		Sites      []struct {
			Site, Status string
		} `json:"sites"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || st.Federation != "adm" || len(st.Sites) != 2 || st.Sites[1].Status != "invited" {
		t.Fatalf("state: %s %v", out, err)
	}
	if _, err := run("admin", "open-round"); err == nil || !strings.Contains(err.Error(), "not enough enrolled sites") {
		t.Fatalf("open-round without sites: %v", err)
	}
	if _, err := run("admin", "revoke-site", "--site", "b", "--reason", "test"); err != nil {
		t.Fatal(err)
	}
	// The auditor's credentials do not allow administration.
	var out2 bytes.Buffer
	rootCmd.SetOut(&out2)
	rootCmd.SetArgs([]string{"admin", "add-site", "--site", "c", "--server", lis.Addr().String(), "--credentials", filepath.Join(cfg.DataDir, "credentials", "auditor")})
	if err := rootCmd.Execute(); err == nil || !strings.Contains(err.Error(), "PermissionDenied") {
		t.Fatalf("auditor add-site: %v", err)
	}
}

func TestDataSynthCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "a.jsonl")
	var buf bytes.Buffer
	rootCmd.SetOut(&buf)
	rootCmd.SetArgs([]string{"data", "synth", "--domain", "finance", "--site", "bank-a", "--records", "25", "--out", out, "--json"})
	if err := rootCmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var s struct {
		Records  int `json:"records"`
		TopicMix []struct {
			Topic string
		} `json:"topic_mix"`
	}
	if err := json.Unmarshal(buf.Bytes(), &s); err != nil || s.Records != 25 || len(s.TopicMix) != 6 {
		t.Fatalf("%s %v", buf.Bytes(), err)
	}
	data, _ := os.ReadFile(out)
	if n := bytes.Count(data, []byte("\n")); n != 25 {
		t.Fatalf("%d lines", n)
	}
	rootCmd.SetArgs([]string{"data", "synth", "--domain", "legal", "--site", "x", "--out", out})
	if err := rootCmd.Execute(); err == nil || !strings.Contains(err.Error(), "unknown domain") {
		t.Fatalf("bad domain: %v", err)
	}
}
