package keystore

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestPassphraseFromEnv(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pass")
	os.WriteFile(file, []byte("from file\r\n"), 0o600)
	open := filepath.Join(dir, "open")
	os.WriteFile(open, []byte("x\n"), 0o644)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)

	cases := []struct {
		env     map[string]string
		want    string
		wantErr bool
	}{
		{map[string]string{"FEDTUNE_PASSPHRASE": "p w"}, "p w", false},
		{map[string]string{"FEDTUNE_PASSPHRASE_FILE": file}, "from file", false},
		{map[string]string{"FEDTUNE_PASSPHRASE_FILE": open}, "", true},
		{map[string]string{"FEDTUNE_PASSPHRASE_FILE": empty}, "", true},
		{map[string]string{"FEDTUNE_PASSPHRASE_FILE": filepath.Join(dir, "missing")}, "", true},
		{map[string]string{"FEDTUNE_PASSPHRASE": ""}, "", true},
		{map[string]string{"FEDTUNE_PASSPHRASE": "a", "FEDTUNE_PASSPHRASE_FILE": file}, "", true},
		{map[string]string{}, "", true},
	}
	for i, c := range cases {
		for _, k := range []string{"FEDTUNE_PASSPHRASE", "FEDTUNE_PASSPHRASE_FILE"} {
			t.Setenv(k, "") // restores the caller's value afterwards
			os.Unsetenv(k)
		}
		for k, v := range c.env {
			t.Setenv(k, v)
		}
		got, err := PassphraseFromEnv()
		if (err != nil) != c.wantErr || string(got) != c.want {
			t.Errorf("case %d: got %q, %v", i, got, err)
		}
		if len(c.env) == 0 && !errors.Is(err, ErrNoPassphrase) {
			t.Errorf("case %d: err %v, want ErrNoPassphrase", i, err)
		}
	}
}
