package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/fedtune/fedtune/internal/atomicfile"
)

// IndexFile is the name of a sharded checkpoint's index.
const IndexFile = "model.safetensors.index.json"

// SingleFile is the name of an unsharded checkpoint's weights.
const SingleFile = "model.safetensors"

// Checkpoint is the weights of a Hugging Face model directory: either one
// model.safetensors or shards listed by model.safetensors.index.json.
// Tensor names are unique across shards.
type Checkpoint struct {
	dir    string
	files  []*File
	byName map[string]*File
}

type index struct {
	Metadata  map[string]any    `json:"metadata"`
	WeightMap map[string]string `json:"weight_map"`
}

// OpenCheckpoint opens the weights in dir. With an index, every shard it names
// is opened and validated, and every tensor must be in the shard the index
// says; a tensor in two shards is an error.
func OpenCheckpoint(dir string) (*Checkpoint, error) {
	ck := &Checkpoint{dir: dir, byName: map[string]*File{}}
	ipath := filepath.Join(dir, IndexFile)
	raw, err := os.ReadFile(ipath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		f, err := Open(filepath.Join(dir, SingleFile))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("%s: no %s or %s", dir, SingleFile, IndexFile)
			}
			return nil, err
		}
		ck.add(f)
		return ck, nil
	case err != nil:
		return nil, err
	}
	var idx index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("%s: %v", ipath, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: weight_map is empty or missing", ipath)
	}
	shards := map[string]bool{}
	for name, shard := range idx.WeightMap {
		if shard == "" || strings.ContainsAny(shard, `/\`) || shard == "." || shard == ".." {
			return nil, fmt.Errorf("%s: weight_map[%q]: shard name %q must be a file name in the model directory", ipath, name, shard)
		}
		shards[shard] = true
	}
	names := make([]string, 0, len(shards))
	for s := range shards {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		f, err := Open(filepath.Join(dir, s))
		if err != nil {
			ck.Close()
			return nil, err
		}
		ck.files = append(ck.files, f)
		for _, t := range f.tensors {
			if other, dup := ck.byName[t.Name]; dup {
				ck.Close()
				return nil, fmt.Errorf("%s: tensor %q: also in %s", f.path, t.Name, other.path)
			}
			ck.byName[t.Name] = f
		}
	}
	for name, shard := range idx.WeightMap {
		f, ok := ck.byName[name]
		if !ok {
			ck.Close()
			return nil, fmt.Errorf("%s: tensor %q: listed in weight_map but not found in %s", ipath, name, shard)
		}
		if filepath.Base(f.path) != shard {
			ck.Close()
			return nil, fmt.Errorf("%s: tensor %q: weight_map says %s, found in %s", ipath, name, shard, f.path)
		}
	}
	return ck, nil
}

func (ck *Checkpoint) add(f *File) {
	ck.files = append(ck.files, f)
	for _, t := range f.tensors {
		ck.byName[t.Name] = f
	}
}

// Dir returns the checkpoint directory.
func (ck *Checkpoint) Dir() string { return ck.dir }

// Tensors lists every tensor of every shard, sorted by name.
func (ck *Checkpoint) Tensors() []TensorInfo {
	var out []TensorInfo
	for _, f := range ck.files {
		out = append(out, f.tensors...)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out
}

// Info describes the named tensor.
func (ck *Checkpoint) Info(name string) (TensorInfo, bool) {
	f, ok := ck.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	return f.Info(name)
}

// Bytes returns the raw bytes of the named tensor (valid until Close).
func (ck *Checkpoint) Bytes(name string) ([]byte, error) {
	f, ok := ck.byName[name]
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: %w", ck.dir, name, ErrNotFound)
	}
	return f.Bytes(name)
}

// Float32 returns the named tensor converted to float32.
func (ck *Checkpoint) Float32(name string) ([]float32, error) {
	f, ok := ck.byName[name]
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q: %w", ck.dir, name, ErrNotFound)
	}
	return f.Float32(name)
}

// Close closes every shard.
func (ck *Checkpoint) Close() error {
	var first error
	for _, f := range ck.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	ck.files = nil
	return first
}

// WriteSharded writes tensors into shards of at most maxShardBytes of tensor
// data each (a tensor larger than the limit gets a shard of its own), named
// model-0000i-of-0000n.safetensors, plus the index. With one shard it writes
// model.safetensors and no index.
func WriteSharded(dir string, tensors []Tensor, metadata map[string]string, maxShardBytes int64) error {
	ts := append([]Tensor(nil), tensors...)
	sort.Slice(ts, func(a, b int) bool { return ts[a].Name < ts[b].Name })
	var groups [][]Tensor
	var cur []Tensor
	var curSize, total int64
	for _, t := range ts {
		sz := int64(len(t.Data))
		total += sz
		if len(cur) > 0 && curSize+sz > maxShardBytes {
			groups = append(groups, cur)
			cur, curSize = nil, 0
		}
		cur = append(cur, t)
		curSize += sz
	}
	if len(cur) > 0 || len(groups) == 0 {
		groups = append(groups, cur)
	}
	if len(groups) == 1 {
		return Write(filepath.Join(dir, SingleFile), groups[0], metadata)
	}
	idx := index{Metadata: map[string]any{"total_size": total}, WeightMap: map[string]string{}}
	for i, g := range groups {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(groups))
		if err := Write(filepath.Join(dir, name), g, metadata); err != nil {
			return err
		}
		for _, t := range g {
			idx.WeightMap[t.Name] = name
		}
	}
	raw, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, IndexFile), append(raw, '\n'), 0o644)
}
