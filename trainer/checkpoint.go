package trainer

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/fedtune/fedtune/internal/atomicfile"
	"github.com/fedtune/fedtune/model"
)

type ckptPointer struct {
	Dir string `json:"dir"`
}

// saveCheckpoint writes checkpoint-<step>/ (PEFT adapter, optimizer state,
// state.json), then atomically points checkpoint.json at it and removes the
// previous one: a crash leaves either the old or the new checkpoint.
func saveCheckpoint(out string, step int, ad *model.Adapter, opt optimizer, st ckptState) error {
	name := fmt.Sprintf("checkpoint-%08d", step)
	dir := filepath.Join(out, name)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := ad.SaveAdapter(dir, ""); err != nil {
		return err
	}
	var buf []byte
	for _, v := range opt.state() {
		for _, x := range v {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
		}
	}
	sum := sha256.Sum256(buf)
	st.OptimizerSHA = hex.EncodeToString(sum[:])
	st.OptimizerT = optT(opt)
	st.Step = step
	if err := atomicfile.Write(filepath.Join(dir, "optimizer.bin"), buf, 0o644); err != nil {
		return err
	}
	if err := writeJSONAtomic(filepath.Join(dir, "state.json"), st); err != nil {
		return err
	}
	old, _ := readPointer(out)
	if err := writeJSONAtomic(filepath.Join(out, ckptPtr), ckptPointer{Dir: name}); err != nil {
		return err
	}
	if old != "" && old != name {
		os.RemoveAll(filepath.Join(out, old))
	}
	return nil
}

func readPointer(out string) (string, error) {
	b, err := os.ReadFile(filepath.Join(out, ckptPtr))
	if err != nil {
		return "", err
	}
	var p ckptPointer
	if err := json.Unmarshal(b, &p); err != nil || p.Dir == "" || filepath.Base(p.Dir) != p.Dir {
		return "", fmt.Errorf("%s: bad checkpoint pointer", filepath.Join(out, ckptPtr))
	}
	return p.Dir, nil
}

func optT(o optimizer) int {
	switch o := o.(type) {
	case *adamW:
		return o.t
	case *sgd:
		return o.t
	}
	return 0
}

// loadCheckpoint restores the adapter and optimizer from the last
// checkpoint in out, if any.
func loadCheckpoint(out string, m *model.Model, ad *model.Adapter, opt optimizer) (ckptState, bool, error) {
	name, err := readPointer(out)
	if errors.Is(err, fs.ErrNotExist) {
		return ckptState{}, false, nil
	}
	if err != nil {
		return ckptState{}, false, err
	}
	dir := filepath.Join(out, name)
	var st ckptState
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return st, false, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, false, fmt.Errorf("%s: %w", filepath.Join(dir, "state.json"), err)
	}
	saved, err := model.LoadAdapter(dir, m)
	if err != nil {
		return st, false, err
	}
	if saved.NumTrainable() != ad.NumTrainable() {
		return st, false, fmt.Errorf("%s: checkpoint adapter has %d trainable parameters, want %d", dir, saved.NumTrainable(), ad.NumTrainable())
	}
	copy(ad.Trainable(), saved.Trainable())
	buf, err := os.ReadFile(filepath.Join(dir, "optimizer.bin"))
	if err != nil {
		return st, false, err
	}
	sum := sha256.Sum256(buf)
	if hex.EncodeToString(sum[:]) != st.OptimizerSHA {
		return st, false, fmt.Errorf("%s: optimizer state does not match its checksum", dir)
	}
	want := 0
	for _, v := range opt.state() {
		want += 4 * len(v)
	}
	if len(buf) != want {
		return st, false, fmt.Errorf("%s: optimizer state has %d bytes, want %d", dir, len(buf), want)
	}
	for _, v := range opt.state() {
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf))
			buf = buf[4:]
		}
	}
	switch o := opt.(type) {
	case *adamW:
		o.t = st.OptimizerT
	case *sgd:
		o.t = st.OptimizerT
	}
	return st, true, nil
}
