package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fedtune/fedtune/audit/canonjson"
	"github.com/fedtune/fedtune/crypto/secagg"
	"github.com/fedtune/fedtune/internal/atomicfile"
	"github.com/fedtune/fedtune/model"
)

// Provenance is the signed statement published next to every global
// adapter version (provenance.json, signature in provenance.sig).
type Provenance struct {
	Schema          string   `json:"schema"`
	Federation      string   `json:"federation"`
	Version         uint64   `json:"version"`
	Round           uint64   `json:"round"`
	Rounds          []uint64 `json:"rounds"`
	BaseModelDigest string   `json:"base_model_digest"`
	AdapterSHA256   string   `json:"adapter_sha256"`
	Sites           []string `json:"sites"`
	DP              struct {
		NoiseMultiplier   float64 `json:"noise_multiplier"`
		ExpectedBatchSize uint32  `json:"expected_batch_size"`
		Steps             uint32  `json:"steps"`
		MaxGradNorm       float64 `json:"max_grad_norm"`
		Delta             float64 `json:"delta"`
		ClipNorm          float64 `json:"client_clip_norm"`
	} `json:"dp"`
	SecAggThreshold uint32 `json:"secagg_threshold"`
	// AuditCheckpoint is the signed audit checkpoint (a C2SP signed note)
	// at the time of publishing.
	AuditCheckpoint string `json:"audit_checkpoint"`
	// SignerKey is the PKIX public key (base64) of the provenance key.
	SignerKey string `json:"signer_key"`
}

// ProvenanceSchema is the schema of provenance.json.
const ProvenanceSchema = "fedtune.provenance/v1"

func (d *roundDriver) writeVersion(ctx context.Context, a *model.Adapter, dir string, r *activeRound, ver uint64, sites []string) error {
	s := d.s
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := a.SaveAdapter(tmp, s.cfg.BaseModel); err != nil {
		return err
	}
	adapterBytes, err := os.ReadFile(filepath.Join(tmp, "adapter_model.safetensors"))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(adapterBytes)
	cp, _, err := s.audit.Checkpoint(ctx)
	if err != nil {
		return err
	}
	signer, err := s.keys.Signer(ctx, keyProv)
	if err != nil {
		return err
	}
	pubDER, err := marshalPKIX(signer.Public())
	if err != nil {
		return err
	}
	p := Provenance{Schema: ProvenanceSchema, Federation: s.cfg.Federation, Version: ver, Round: r.cfg.Round,
		BaseModelDigest: s.baseDigest, AdapterSHA256: "sha256:" + hex.EncodeToString(sum[:]), Sites: sites,
		SecAggThreshold: r.cfg.Threshold, AuditCheckpoint: string(cp), SignerKey: base64.StdEncoding.EncodeToString(pubDER)}
	pubs, err := s.st.published(ctx)
	if err != nil {
		return err
	}
	for _, q := range pubs {
		p.Rounds = append(p.Rounds, q.Round)
	}
	p.Rounds = append(p.Rounds, r.cfg.Round)
	dp := r.cfg.Dp
	p.DP.NoiseMultiplier, p.DP.ExpectedBatchSize, p.DP.Steps, p.DP.MaxGradNorm, p.DP.Delta, p.DP.ClipNorm =
		dp.NoiseMultiplier, dp.ExpectedBatchSize, dp.Steps, dp.MaxGradNorm, dp.Delta, r.cfg.ClipNorm
	raw, err := json.Marshal(p)
	if err != nil {
		return err
	}
	canon, err := canonjson.Canonicalize(raw)
	if err != nil {
		return err
	}
	sig, err := signer.Sign(ctx, canon)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(tmp, "provenance.json"), append(canon, '\n'), 0o644); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(tmp, "provenance.sig"), []byte(base64.StdEncoding.EncodeToString(sig)+"\n"), 0o644); err != nil {
		return err
	}
	os.RemoveAll(dir) // a leftover from a crash before the database recorded it
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

func digestOfVector(v []uint32) string {
	h := secagg.VectorDigest(v)
	return "sha256:" + hex.EncodeToString(h[:])
}

var _ = fmt.Sprint
