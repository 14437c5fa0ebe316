// Package posixlog keeps a fedtune audit log in a local directory, on the
// tessera transparency-log library with its POSIX storage driver.
//
// # Layout
//
// A log directory holds:
//
//	tlog/          the tessera tiled log (C2SP tlog-tiles): entry bundles,
//	               hash tiles, the latest checkpoint
//	checkpoints/   every checkpoint the log signed, one signed note per
//	               tree size, with the witnesses' cosignatures appended
//
// # Guarantees
//
// [Log.Append] returns after the entry is sequenced, written, integrated
// into the Merkle tree and synced to disk. A signed checkpoint that
// commits to it follows within the checkpoint interval;
// [Log.AwaitCheckpoint] waits for it. Only one process may append to a log
// directory at a time (tessera serializes integration with file locks).
//
// This package does I/O; the pure parts of the audit trail (entries,
// checkpoints, proofs, verification) are in package audit and
// audit/merkle.
package posixlog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/api/layout"
	"github.com/transparency-dev/tessera/storage/posix"
	"k8s.io/klog/v2"

	"github.com/fedtune/fedtune/audit"
	"github.com/fedtune/fedtune/audit/merkle"
	"github.com/fedtune/fedtune/crypto/keystore"
	"github.com/fedtune/fedtune/internal/atomicfile"
)

const (
	tlogDir       = "tlog"
	historyDir    = "checkpoints"
	originFile    = "origin"
	minCPInterval = 100 * time.Millisecond // tessera's POSIX driver minimum
)

// Options configures a log.
type Options struct {
	// Origin is the log's name: the first line of its checkpoints and the
	// name of its checkpoint key ("fedtune.example.org/audit", say).
	// Fixed when the log is created.
	Origin string
	// Signer signs checkpoints; it must hold an Ed25519 key.
	Signer keystore.Signer
	// CheckpointInterval is the most time between an append and a signed
	// checkpoint covering it; default and minimum 100ms.
	CheckpointInterval time.Duration
	// BatchMaxAge is how long an entry may wait for others to share its
	// write; default 10ms.
	BatchMaxAge time.Duration
	// BatchMaxSize bounds the entries written together; default 256.
	BatchMaxSize uint
}

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	dir      string
	origin   string
	signer   *audit.NoteSigner
	appender *tessera.Appender
	reader   tessera.LogReader
	shutdown func(context.Context) error
	cancel   context.CancelFunc
	interval time.Duration

	histMu  sync.Mutex
	histErr error // first failure to record a signed checkpoint
}

// Create initializes a new log in dir (created if absent, must be empty
// otherwise) and opens it.
func Create(ctx context.Context, dir string, opts Options) (*Log, error) {
	if des, err := os.ReadDir(dir); err == nil && len(des) > 0 {
		return nil, fmt.Errorf("posixlog: %s is not empty", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, historyDir), 0o755); err != nil {
		return nil, fmt.Errorf("posixlog: %w", err)
	}
	if opts.Origin == "" || strings.ContainsAny(opts.Origin, "\n+ ") {
		return nil, fmt.Errorf("posixlog: origin %q must be non-empty without spaces, '+' or newlines", opts.Origin)
	}
	if err := os.WriteFile(filepath.Join(dir, originFile), []byte(opts.Origin+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("posixlog: %w", err)
	}
	return Open(ctx, dir, opts)
}

// Open opens an existing log in dir. opts.Origin may be empty; if set it
// must match the origin the log was created with.
func Open(ctx context.Context, dir string, opts Options) (*Log, error) {
	ob, err := os.ReadFile(filepath.Join(dir, originFile))
	if err != nil {
		return nil, fmt.Errorf("posixlog: %s is not an audit log: %w", dir, err)
	}
	origin := strings.TrimSuffix(string(ob), "\n")
	if opts.Origin != "" && opts.Origin != origin {
		return nil, fmt.Errorf("posixlog: log origin is %q, not %q", origin, opts.Origin)
	}
	if opts.Signer == nil {
		return nil, errors.New("posixlog: a checkpoint signer is required")
	}
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = minCPInterval
	}
	if opts.CheckpointInterval < minCPInterval {
		return nil, fmt.Errorf("posixlog: checkpoint interval %v is below the minimum %v", opts.CheckpointInterval, minCPInterval)
	}
	if opts.BatchMaxAge == 0 {
		opts.BatchMaxAge = 10 * time.Millisecond
	}
	if opts.BatchMaxSize == 0 {
		opts.BatchMaxSize = tessera.DefaultBatchMaxSize
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ns, err := audit.NewNoteSigner(lctx, origin, opts.Signer)
	if err != nil {
		cancel()
		return nil, err
	}
	l := &Log{dir: dir, origin: origin, signer: ns, cancel: cancel, interval: opts.CheckpointInterval}
	ns.SetObserver(l.recordCheckpoint)
	driver, err := posix.New(lctx, posix.Config{Path: filepath.Join(dir, tlogDir)})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("posixlog: %w", err)
	}
	ao := tessera.NewAppendOptions().
		WithCheckpointSigner(ns).
		WithCheckpointInterval(opts.CheckpointInterval).
		WithBatching(opts.BatchMaxSize, opts.BatchMaxAge).
		WithCheckpointRepublishInterval(0).
		WithGarbageCollectionInterval(time.Minute)
	app, shutdown, reader, err := tessera.NewAppender(lctx, driver, ao)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("posixlog: opening tessera log: %w", err)
	}
	l.appender, l.shutdown, l.reader = app, shutdown, reader
	if err := l.historyError(); err != nil {
		l.Close(ctx)
		return nil, err
	}
	return l, nil
}

// QuietLibraryLogs stops tessera's informational logging (klog to
// stderr). Command-line tools call it once at start-up.
func QuietLibraryLogs() {
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
}

// Origin returns the log's origin line.
func (l *Log) Origin() string { return l.origin }

// VerifierKey returns the log's checkpoint verifier key.
func (l *Log) VerifierKey() audit.VerifierKey { return l.signer.VerifierKey() }

// Close stops the log after finishing in-flight appends.
func (l *Log) Close(ctx context.Context) error {
	err := l.shutdown(ctx)
	l.cancel()
	return err
}

func (l *Log) historyError() error {
	l.histMu.Lock()
	defer l.histMu.Unlock()
	return l.histErr
}

// recordCheckpoint keeps every checkpoint the log signs, so that an
// export can show the whole sequence and witnesses' cosignatures can be
// attached to the size they cosigned.
func (l *Log) recordCheckpoint(text, sig []byte) {
	l.histMu.Lock()
	defer l.histMu.Unlock()
	c, err := audit.ParseCheckpoint(text)
	if err == nil {
		n := &audit.Note{Text: text, Sigs: []audit.NoteSignature{{Name: l.signer.Name(), KeyHash: l.signer.KeyHash(), Sig: sig}}}
		p := filepath.Join(l.dir, historyDir, audit.CheckpointFileName(c.Size))
		if old, rerr := os.ReadFile(p); rerr == nil {
			if !bytes.HasPrefix(old, n.Marshal()) {
				err = fmt.Errorf("posixlog: signed a second, different checkpoint of size %d", c.Size)
			}
		} else {
			err = atomicfile.Write(p, n.Marshal(), 0o644)
		}
	}
	if err != nil && l.histErr == nil {
		l.histErr = err
	}
}

// Append adds e to the log and returns its index once it is durably
// stored and integrated into the tree.
func (l *Log) Append(ctx context.Context, e *audit.Entry) (uint64, error) {
	return l.AppendAsync(ctx, e)()
}

// AppendAsync queues e and returns a future for its index, so that many
// entries can share one write. Entries appended by one goroutine, each
// after the previous call returned, keep their order.
func (l *Log) AppendAsync(ctx context.Context, e *audit.Entry) func() (uint64, error) {
	data, err := e.Marshal()
	if err != nil {
		return func() (uint64, error) { return 0, err }
	}
	return l.AppendRawAsync(ctx, data)
}

// AppendRawAsync is AppendAsync for leaf data that is already a canonical
// entry (as [audit.Entry.Marshal] returns it); it is checked again.
func (l *Log) AppendRawAsync(ctx context.Context, data []byte) func() (uint64, error) {
	if _, err := audit.ParseEntry(data); err != nil {
		return func() (uint64, error) { return 0, fmt.Errorf("posixlog: refusing entry: %w", err) }
	}
	f := l.appender.Add(ctx, tessera.NewEntry(data))
	return func() (uint64, error) {
		idx, err := f()
		if err != nil {
			return 0, fmt.Errorf("posixlog: append: %w", err)
		}
		if err := l.historyError(); err != nil {
			return idx.Index, err
		}
		return idx.Index, nil
	}
}

// Size returns the size of the tree committed to by the latest signed
// checkpoint.
func (l *Log) Size(ctx context.Context) (uint64, error) {
	cp, err := l.latest(ctx)
	if err != nil {
		return 0, err
	}
	return cp.Size, nil
}

func (l *Log) latest(ctx context.Context) (*audit.SignedCheckpoint, error) {
	b, err := l.reader.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("posixlog: reading checkpoint: %w", err)
	}
	return audit.OpenCheckpoint(b, l.signer.VerifierKey(), nil)
}

// Checkpoint returns the latest signed checkpoint, with the cosignatures
// collected for it so far.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, error) {
	cp, err := l.latest(ctx)
	if err != nil {
		return nil, err
	}
	return l.CheckpointAt(cp.Size)
}

// CheckpointAt returns the signed checkpoint of the given size with its
// cosignatures; fs.ErrNotExist if the log never signed that size.
func (l *Log) CheckpointAt(size uint64) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(l.dir, historyDir, audit.CheckpointFileName(size)))
	if err != nil {
		return nil, fmt.Errorf("posixlog: checkpoint of size %d: %w", size, err)
	}
	return b, nil
}

// AwaitCheckpoint waits until a signed checkpoint covers at least size
// entries and returns it (with cosignatures so far).
func (l *Log) AwaitCheckpoint(ctx context.Context, size uint64) ([]byte, error) {
	t := time.NewTicker(l.interval / 4)
	defer t.Stop()
	var last error
	for {
		// A missing checkpoint, or one signed by a key version rotated out
		// since, is replaced at the next publication: keep polling.
		cp, err := l.latest(ctx)
		if err == nil && cp.Size >= size {
			return l.CheckpointAt(cp.Size)
		}
		if err != nil {
			last = err
		}
		if err := l.historyError(); err != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return nil, fmt.Errorf("posixlog: waiting for a checkpoint of size %d: %w (last error: %v)", size, ctx.Err(), last)
			}
			return nil, fmt.Errorf("posixlog: waiting for a checkpoint of size %d: %w", size, ctx.Err())
		case <-t.C:
		}
	}
}

// AddCosignature verifies a witness's cosignature line on the checkpoint
// of the given size with witness (its cosignature/v1 key) and stores it
// with the checkpoint. Adding the same witness twice is an error.
func (l *Log) AddCosignature(ctx context.Context, size uint64, witness audit.VerifierKey, sigLine []byte) error {
	l.histMu.Lock()
	defer l.histMu.Unlock()
	p := filepath.Join(l.dir, historyDir, audit.CheckpointFileName(size))
	old, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("posixlog: checkpoint of size %d: %w", size, err)
	}
	n, err := audit.ParseNote(old)
	if err != nil {
		return fmt.Errorf("posixlog: stored checkpoint of size %d: %w", size, err)
	}
	for _, s := range n.Sigs {
		if s.Name == witness.Name {
			return fmt.Errorf("posixlog: witness %s already cosigned size %d", witness.Name, size)
		}
	}
	if _, err := audit.VerifyCosignatureLine(n.Text, witness, sigLine); err != nil {
		return fmt.Errorf("posixlog: cosignature of %s on size %d: %w", witness.Name, size, err)
	}
	return atomicfile.Write(p, append(append([]byte(nil), old...), sigLine...), 0o644)
}

// Entry returns the leaf data of the entry at index, which must be below
// the size of the latest checkpoint.
func (l *Log) Entry(ctx context.Context, index uint64) ([]byte, error) {
	size, err := l.Size(ctx)
	if err != nil {
		return nil, err
	}
	if index >= size {
		return nil, fmt.Errorf("posixlog: entry %d is beyond the checkpointed size %d", index, size)
	}
	b, err := l.bundle(ctx, index/layout.EntryBundleWidth, size)
	if err != nil {
		return nil, err
	}
	return b.Entries[index%layout.EntryBundleWidth], nil
}

func (l *Log) bundle(ctx context.Context, idx, size uint64) (*api.EntryBundle, error) {
	p := layout.PartialTileSize(0, idx, size)
	raw, err := l.reader.ReadEntryBundle(ctx, idx, p)
	if err != nil {
		return nil, fmt.Errorf("posixlog: reading entry bundle %d: %w", idx, err)
	}
	var b api.EntryBundle
	if err := b.UnmarshalText(raw); err != nil {
		return nil, fmt.Errorf("posixlog: entry bundle %d: %w", idx, err)
	}
	want := uint64(p)
	if want == 0 {
		want = layout.EntryBundleWidth
	}
	if uint64(len(b.Entries)) < want {
		return nil, fmt.Errorf("posixlog: entry bundle %d has %d entries, want %d", idx, len(b.Entries), want)
	}
	return &b, nil
}

// Entries calls fn for each entry with index in [from, to), in order.
func (l *Log) Entries(ctx context.Context, from, to uint64, fn func(index uint64, data []byte) error) error {
	size, err := l.Size(ctx)
	if err != nil {
		return err
	}
	if to > size || from > to {
		return fmt.Errorf("posixlog: entries [%d, %d) outside the checkpointed size %d", from, to, size)
	}
	for i := from; i < to; {
		bi := i / layout.EntryBundleWidth
		b, err := l.bundle(ctx, bi, size)
		if err != nil {
			return err
		}
		for ; i < to && i/layout.EntryBundleWidth == bi; i++ {
			if err := fn(i, b.Entries[i%layout.EntryBundleWidth]); err != nil {
				return err
			}
		}
	}
	return nil
}

// tileSource reads perfect-subtree hashes from the log's hash tiles for a
// tree of a fixed size.
type tileSource struct {
	ctx   context.Context
	r     tessera.LogReader
	size  uint64
	cache map[[2]uint64][][]byte
}

// Node implements merkle.NodeSource. A tile at tile level L holds the
// hashes of tree level 8L; a node at a level between is computed from the
// 2^(level mod 8) hashes below it in one tile.
func (t *tileSource) Node(level uint, index uint64) (merkle.Hash, error) {
	tl, sub := uint64(level/layout.TileHeight), level%layout.TileHeight
	first := index << sub
	tileIdx := first / layout.TileWidth
	key := [2]uint64{tl, tileIdx}
	nodes, ok := t.cache[key]
	if !ok {
		p := layout.PartialTileSize(tl, tileIdx, t.size)
		raw, err := t.r.ReadTile(t.ctx, tl, tileIdx, p)
		if err != nil {
			return merkle.Hash{}, fmt.Errorf("posixlog: reading tile %d/%d: %w", tl, tileIdx, err)
		}
		var ht api.HashTile
		if err := ht.UnmarshalText(raw); err != nil {
			return merkle.Hash{}, fmt.Errorf("posixlog: tile %d/%d: %w", tl, tileIdx, err)
		}
		nodes = ht.Nodes
		t.cache[key] = nodes
	}
	off := first % layout.TileWidth
	n := uint64(1) << sub
	if off+n > uint64(len(nodes)) {
		return merkle.Hash{}, fmt.Errorf("posixlog: tile %d/%d has %d hashes, need %d", tl, tileIdx, len(nodes), off+n)
	}
	hs := make([]merkle.Hash, n)
	for i := range hs {
		if len(nodes[off+uint64(i)]) != merkle.HashSize {
			return merkle.Hash{}, fmt.Errorf("posixlog: tile %d/%d: bad hash size", tl, tileIdx)
		}
		hs[i] = merkle.Hash(nodes[off+uint64(i)])
	}
	for len(hs) > 1 {
		for i := 0; i < len(hs)/2; i++ {
			hs[i] = merkle.NodeHash(hs[2*i], hs[2*i+1])
		}
		hs = hs[:len(hs)/2]
	}
	return hs[0], nil
}

// source returns a NodeSource for trees up to the latest checkpoint. It
// reads tiles as they are at the latest size: nodes of an older, smaller
// tree are unchanged in them, while the partial tiles of older sizes may
// have been garbage-collected.
func (l *Log) source(ctx context.Context, size uint64) (*tileSource, error) {
	cur, err := l.Size(ctx)
	if err != nil {
		return nil, err
	}
	if size > cur {
		return nil, fmt.Errorf("posixlog: tree size %d is beyond the checkpointed size %d", size, cur)
	}
	return &tileSource{ctx: ctx, r: l.reader, size: cur, cache: map[[2]uint64][][]byte{}}, nil
}

// withSource runs fn against a fresh tile source, once more if the log
// grew and replaced a partial tile in between.
func withSource[T any](ctx context.Context, l *Log, size uint64, fn func(merkle.NodeSource) (T, error)) (T, error) {
	var zero T
	for attempt := 0; ; attempt++ {
		src, err := l.source(ctx, size)
		if err != nil {
			return zero, err
		}
		v, err := fn(src)
		if err != nil && attempt == 0 && errors.Is(err, fs.ErrNotExist) {
			continue
		}
		return v, err
	}
}

// InclusionProof returns the RFC 6962 inclusion proof of entry index in
// the tree of the given size.
func (l *Log) InclusionProof(ctx context.Context, index, size uint64) ([]merkle.Hash, error) {
	return withSource(ctx, l, size, func(src merkle.NodeSource) ([]merkle.Hash, error) {
		return merkle.InclusionProof(src, index, size)
	})
}

// ConsistencyProof returns the RFC 6962 consistency proof between two
// tree sizes (0 < from <= to).
func (l *Log) ConsistencyProof(ctx context.Context, from, to uint64) ([]merkle.Hash, error) {
	return withSource(ctx, l, to, func(src merkle.NodeSource) ([]merkle.Hash, error) {
		return merkle.ConsistencyProof(src, from, to)
	})
}

// RootAt returns the root hash of the tree of the given size, read from
// the hash tiles.
func (l *Log) RootAt(ctx context.Context, size uint64) (merkle.Hash, error) {
	return withSource(ctx, l, size, func(src merkle.NodeSource) (merkle.Hash, error) {
		return merkle.Root(src, size)
	})
}

// Export writes a bundle of the log's first size entries (0: all entries
// under the latest checkpoint) into dir, with every signed checkpoint up
// to that size and policy as policy.json.
func (l *Log) Export(ctx context.Context, dir string, size uint64, policy audit.Policy) (*audit.Bundle, error) {
	cur, err := l.Size(ctx)
	if err != nil {
		return nil, err
	}
	if size == 0 {
		size = cur
	}
	if size > cur {
		return nil, fmt.Errorf("posixlog: export of %d entries, but the log has %d", size, cur)
	}
	var b audit.Bundle
	var buf bytes.Buffer
	if err := l.Entries(ctx, 0, size, func(_ uint64, data []byte) error {
		buf.Write(data)
		buf.WriteByte('\n')
		return nil
	}); err != nil {
		return nil, err
	}
	b.Entries = buf.Bytes()
	des, err := os.ReadDir(filepath.Join(l.dir, historyDir))
	if err != nil {
		return nil, fmt.Errorf("posixlog: %w", err)
	}
	for _, de := range des {
		if !strings.HasSuffix(de.Name(), ".note") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(l.dir, historyDir, de.Name()))
		if err != nil {
			return nil, fmt.Errorf("posixlog: %w", err)
		}
		n, err := audit.ParseNote(data)
		if err != nil {
			return nil, fmt.Errorf("posixlog: %s: %w", de.Name(), err)
		}
		c, err := audit.ParseCheckpoint(n.Text)
		if err != nil {
			return nil, fmt.Errorf("posixlog: %s: %w", de.Name(), err)
		}
		if c.Size == 0 || c.Size > size {
			continue
		}
		b.Checkpoints = append(b.Checkpoints, audit.BundleFile{Name: audit.CheckpointFileName(c.Size), Data: data})
	}
	sort.Slice(b.Checkpoints, func(i, j int) bool { return b.Checkpoints[i].Name < b.Checkpoints[j].Name })
	if size > 0 && (len(b.Checkpoints) == 0 || b.Checkpoints[len(b.Checkpoints)-1].Name != audit.CheckpointFileName(size)) {
		return nil, fmt.Errorf("posixlog: no signed checkpoint of size %d to export", size)
	}
	pj, err := marshalPolicy(policy)
	if err != nil {
		return nil, err
	}
	b.Policy = pj
	if dir != "" {
		if err := b.Write(dir); err != nil {
			return nil, err
		}
	}
	return &b, nil
}

func marshalPolicy(p audit.Policy) ([]byte, error) {
	if _, err := p.Parse(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("posixlog: %w", err)
	}
	return append(b, '\n'), nil
}
