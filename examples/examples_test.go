// Package examples holds annotated configuration files for the aggregator
// (server.json) and a site (client.json). The test loads both with the
// same loaders the commands use.
package examples

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedtune/fedtune/client"
	"github.com/fedtune/fedtune/server"
)

func copyTo(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExampleServerConfig(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "base-model"), 0o755)
	c, err := server.LoadConfig(copyTo(t, dir, "server.json"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Federation != "hospitals-2026" || c.Round.Threshold != 3 || c.Round.TrainTimeout.D() != 30*time.Minute || len(c.Sites) != 4 {
		t.Fatalf("unexpected values: %+v", c)
	}
	if c.DataDir != filepath.Join(dir, "aggregator-data") || c.Keystore.Dir != filepath.Join(dir, "aggregator-data", "keys") {
		t.Fatalf("paths not resolved against the file: %s %s", c.DataDir, c.Keystore.Dir)
	}
}

func TestExampleClientConfig(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "train.jsonl"), []byte(`{"text":"x"}`+"\n"), 0o600)
	c, err := client.LoadConfig(copyTo(t, dir, "client.json"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Site != "st-marys" || c.Policy.EpsilonCap != 8 || c.Policy.MaxEpsilonPerRound != 1 || c.MaxSeq != 128 {
		t.Fatalf("unexpected values: %+v", c)
	}
}

// Breaking a field gives an error naming the file, line and field.
func TestExampleServerConfigErrors(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "base-model"), 0o755)
	p := copyTo(t, dir, "server.json")
	raw, _ := os.ReadFile(p)
	for _, tc := range []struct{ from, to, want string }{
		{`"threshold": 3`, `"threshold": 1`, "round.threshold"},
		{`"server_optimizer": "fedavg"`, `"server_optimizer": "sgd"`, "round.server_optimizer"},
		{`"stage_timeout": "2m"`, `"stage_timeout": "soon"`, "stage_timeout"},
		{`"burst": 200`, `"burst": 200, "bursts": 1`, "bursts"},
		{`"federation": "hospitals-2026"`, `"federation": "Hospitals 2026"`, "federation"},
	} {
		bad := strings.Replace(string(raw), tc.from, tc.to, 1)
		os.WriteFile(p, []byte(bad), 0o600)
		_, err := server.LoadConfig(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "server.json:") {
			t.Errorf("%s → %v, want an error naming server.json:<line> and %s", tc.to, err, tc.want)
		}
	}
}
