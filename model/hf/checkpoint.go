package hf

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/fedtune/fedtune/internal/atomicfile"
	"github.com/fedtune/fedtune/model/safetensors"
)

// CheckCheckpoint checks that ck holds exactly the tensors c implies, with
// the right shapes and float dtypes. Errors name the file and the tensor.
func CheckCheckpoint(c *Config, ck *safetensors.Checkpoint) error {
	want := c.ExpectedTensors()
	for _, name := range sortedNames(want) {
		ti, ok := ck.Info(name)
		if !ok {
			return fmt.Errorf("%s: tensor %q: missing (required by config.json)", ck.Dir(), name)
		}
		if !ti.DType.IsFloat() {
			return fmt.Errorf("%s: tensor %q: dtype %s, want F32, F16, BF16 or F64", ti.File, name, ti.DType)
		}
		if !equalShape(ti.Shape, want[name]) {
			return fmt.Errorf("%s: tensor %q: shape %v disagrees with config.json, which implies %v", ti.File, name, ti.Shape, want[name])
		}
	}
	for _, ti := range ck.Tensors() {
		if _, ok := want[ti.Name]; !ok && !ignorableTensor(ti.Name) {
			if ti.Name == "lm_head.weight" && c.TieWordEmbeddings {
				continue // some exporters keep the tied copy
			}
			return fmt.Errorf("%s: tensor %q: not part of a %s with this config.json", ti.File, ti.Name, c.Architecture())
		}
	}
	return nil
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// tensorRNG returns a generator determined by (seed, name) alone, so a
// tensor's values do not depend on which other tensors exist.
func tensorRNG(seed int64, name string) *rand.Rand {
	h := sha256.Sum256([]byte(name))
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], uint64(seed))
	for i := range 24 {
		key[8+i] = h[i]
	}
	return rand.New(rand.NewChaCha8(key))
}

// InitTensors returns deterministic random weights for c: normal with
// standard deviation initializer_range (0.02 when unset) for matrices and
// biases, ones for norm weights, as transformers initialises a new model.
func InitTensors(c *Config, seed int64) map[string][]float32 {
	std := c.InitializerRng
	if std == 0 {
		std = 0.02
	}
	out := map[string][]float32{}
	for name, shape := range c.ExpectedTensors() {
		n := 1
		for _, d := range shape {
			n *= d
		}
		v := make([]float32, n)
		if strings.HasSuffix(name, "norm.weight") {
			for i := range v {
				v[i] = 1
			}
		} else {
			r := tensorRNG(seed, name)
			for i := range v {
				v[i] = float32(r.NormFloat64() * std)
			}
		}
		out[name] = v
	}
	return out
}

// InitCheckpoint writes a deterministic random checkpoint for c into dir
// (created if needed): config.json, model.safetensors in dtype, and
// tokenizer.json when tokenizerJSON is not nil.
func InitCheckpoint(dir string, c *Config, seed int64, dtype safetensors.DType, tokenizerJSON []byte) error {
	if err := c.Validate(); err != nil {
		return err
	}
	switch dtype {
	case safetensors.F32, safetensors.F16, safetensors.BF16:
	default:
		return fmt.Errorf("dtype %q: want F32, F16 or BF16", dtype)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cc := *c
	cc.TorchDtype = map[safetensors.DType]string{safetensors.F32: "float32", safetensors.F16: "float16", safetensors.BF16: "bfloat16"}[dtype]
	cfg, err := cc.Marshal()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "config.json"), append(cfg, '\n'), 0o644); err != nil {
		return err
	}
	vals := InitTensors(c, seed)
	shapes := c.ExpectedTensors()
	var ts []safetensors.Tensor
	for _, name := range sortedNames(shapes) {
		ts = append(ts, safetensors.Float32Tensor(name, shapes[name], vals[name], dtype))
	}
	if err := safetensors.Write(filepath.Join(dir, safetensors.SingleFile), ts, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	if tokenizerJSON != nil {
		if err := atomicfile.Write(filepath.Join(dir, "tokenizer.json"), tokenizerJSON, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// CheckpointDigest identifies a model directory's weights and config:
// "sha256:" + hex SHA-256 over, for config.json and each *.safetensors file
// and index in name order, the line "<name> <hex sha256 of its bytes>\n".
// Sites pin base models by this digest.
func CheckpointDigest(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if e.Type().IsRegular() && (n == "config.json" || strings.HasSuffix(n, ".safetensors") || n == safetensors.IndexFile) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "", fmt.Errorf("%s: no config.json or safetensors files", dir)
	}
	outer := sha256.New()
	for _, n := range names {
		f, err := os.Open(filepath.Join(dir, n))
		if err != nil {
			return "", err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
		fmt.Fprintf(outer, "%s %s\n", n, hex.EncodeToString(h.Sum(nil)))
	}
	return "sha256:" + hex.EncodeToString(outer.Sum(nil)), nil
}
