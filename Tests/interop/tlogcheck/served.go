package main

// The "served" mode: tlogcheck reads a running node's ledger over HTTP, as any outside verifier
// would, and checks it with Go's golang.org/x/mod/sumdb/note and sumdb/tlog:
//
//	tlogcheck served -key <log vkey> [-witness <vkey>]... [-previous <checkpoint file>]... [-proofs] <base URL>
//
//   - /checkpoint opens with note.Open under the log key; its text is a C2SP checkpoint whose
//     origin is the key name. With -witness, that witness's C2SP tlog-cosignature (cosignature/v1,
//     Ed25519: key ID SHA-256(name || 0x0A || 0x04 || key)[:4], signature u64 timestamp ||
//     Ed25519 over "cosignature/v1\ntime <t>\n" || note text) must be on it and verify (checked by
//     note.Open through a note.Verifier written here from the spec).
//   - every hash tile of the tree (full ones and the partial one of each level) is fetched through
//     tlog.TileHashReader, which authenticates each against the checkpoint; the bytes served must be
//     tlog.ReadTileData of the authenticated hashes, and tlog.TreeHash must be the root.
//   - every entry bundle (/tile/entries/N[.p/W], big-endian uint16 length + entry) is read; each
//     entry's tlog.RecordHash must be the level-0 hash the tiles hold, and an inclusion proof made
//     from the tiles (tlog.ProveRecord) must pass tlog.CheckRecord against the checkpoint.
//   - with -proofs, /proof/inclusion?index=i of every entry must be exactly that proof (and pass
//     tlog.CheckRecord); with -previous (an earlier signed checkpoint of the same log),
//     /proof/consistency?from=<old>&to=<size> must pass tlog.CheckTree and equal tlog.ProveTree.
//
// Prints "ok: ..." and exits 0, or "FAIL: ..." and exits 1; 2 on bad arguments.

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// cosignatureVerifier is a note.Verifier for C2SP tlog-cosignature cosignature/v1 (Ed25519).
type cosignatureVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
	seen *uint64
}

func newCosignatureVerifier(vkey string) (*cosignatureVerifier, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("witness key %q: want <name>+<key ID>+<key>", vkey)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 33 || (raw[0] != 0x04 && raw[0] != 0x01) {
		return nil, fmt.Errorf("witness key %q: not an Ed25519 key of type 0x04 or 0x01", vkey)
	}
	h := sha256.Sum256(append(append([]byte(parts[0]+"\n"), 0x04), raw[1:]...))
	id := binary.BigEndian.Uint32(h[:4])
	if raw[0] == 0x04 {
		stated, err := strconv.ParseUint(parts[1], 16, 32)
		if err != nil || uint32(stated) != id {
			return nil, fmt.Errorf("witness key %q: key ID is %08x", vkey, id)
		}
	}
	var seen uint64
	return &cosignatureVerifier{name: parts[0], hash: id, key: ed25519.PublicKey(raw[1:]), seen: &seen}, nil
}

func (v *cosignatureVerifier) Name() string    { return v.name }
func (v *cosignatureVerifier) KeyHash() uint32 { return v.hash }
func (v *cosignatureVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	t := binary.BigEndian.Uint64(sig[:8])
	if t > 1<<63-1 {
		return false
	}
	signed := append([]byte(fmt.Sprintf("cosignature/v1\ntime %d\n", t)), msg...)
	if !ed25519.Verify(v.key, signed, sig[8:]) {
		return false
	}
	*v.seen = t
	return true
}

type httpLog struct {
	base    string
	client  *http.Client
	fetched int
}

func (l *httpLog) get(path string) ([]byte, error) {
	resp, err := l.client.Get(l.base + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: HTTP %d: %s", path, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	l.fetched++
	return body, nil
}

// servedTiles is a tlog.TileReader over the node's C2SP tile paths (no height in the path).
type servedTiles struct {
	log   *httpLog
	reads map[string]int
}

func c2spTilePath(t tlog.Tile) string { return "tile/" + strings.TrimPrefix(t.Path(), "tile/8/") }

func (r *servedTiles) Height() int { return 8 }
func (r *servedTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		p := c2spTilePath(t)
		data, err := r.log.get(p)
		if err != nil {
			return nil, err
		}
		r.reads[p]++
		out[i] = data
	}
	return out, nil
}
func (r *servedTiles) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

func served(args []string) {
	fs := flag.NewFlagSet("served", flag.ExitOnError)
	key := fs.String("key", "", "the log's verifier key")
	proofs := fs.Bool("proofs", false, "also check /proof/inclusion for every entry")
	var witnesses, previous multiFlag
	fs.Var(&witnesses, "witness", "a witness's verifier key whose cosignature must be on the checkpoint (repeatable)")
	fs.Var(&previous, "previous", "an earlier signed checkpoint (file) to check consistency with (repeatable)")
	fs.Parse(args)
	if fs.NArg() != 1 || *key == "" {
		usage("usage: tlogcheck served -key VKEY [-witness VKEY]... [-previous FILE]... [-proofs] URL")
	}
	l := &httpLog{base: strings.TrimSuffix(fs.Arg(0), "/") + "/", client: &http.Client{Timeout: 60 * time.Second}}

	// The checkpoint and its signatures.
	v, err := note.NewVerifier(*key)
	if err != nil {
		usage("verifier key %q: %v", *key, err)
	}
	verifiers := []note.Verifier{v}
	var cosigners []*cosignatureVerifier
	for _, w := range witnesses {
		cv, err := newCosignatureVerifier(w)
		if err != nil {
			usage("%v", err)
		}
		cosigners = append(cosigners, cv)
		verifiers = append(verifiers, cv)
	}
	raw, err := l.get("checkpoint")
	if err != nil {
		fail("%v", err)
	}
	n, err := note.Open(raw, note.VerifierList(verifiers...))
	if err != nil {
		fail("/checkpoint: note.Open: %v", err)
	}
	signedBy := map[string]bool{}
	for _, s := range n.Sigs {
		signedBy[fmt.Sprintf("%s+%08x", s.Name, s.Hash)] = true
	}
	if !signedBy[fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())] {
		fail("/checkpoint: not signed by the log key %s", v.Name())
	}
	for _, c := range cosigners {
		if !signedBy[fmt.Sprintf("%s+%08x", c.name, c.hash)] {
			fail("/checkpoint: no cosignature by witness %s+%08x", c.name, c.hash)
		}
	}
	origin, tree, err := parseCheckpoint(n.Text)
	if err != nil {
		fail("/checkpoint: %v", err)
	}
	if origin != v.Name() {
		fail("/checkpoint: origin %q is not the key name %q", origin, v.Name())
	}

	// Every tile of the tree, authenticated against the checkpoint.
	tr := &servedTiles{log: l, reads: map[string]int{}}
	hr := tlog.TileHashReader(tree, tr)
	th, err := tlog.TreeHash(tree.N, hr)
	if err != nil {
		fail("tiles: tlog.TreeHash: %v", err)
	}
	if th != tree.Hash {
		fail("tiles: tree hash %v, the checkpoint says %v", th, tree.Hash)
	}
	tiles := 0
	all := tlog.NewTiles(8, 0, tree.N)
	for i, t := range all {
		if t.W != 256 && i+1 < len(all) && all[i+1].L == t.L && all[i+1].N == t.N {
			continue // a narrower width of the same partial tile: only the current width is served
		}
		want, err := tlog.ReadTileData(t, hr)
		if err != nil {
			fail("tiles: %s: %v", c2spTilePath(t), err)
		}
		got, err := l.get(c2spTilePath(t))
		if err != nil {
			fail("tiles: %v", err)
		}
		if string(got) != string(want) {
			fail("tiles: %s served differs from the authenticated hashes", c2spTilePath(t))
		}
		tiles++
	}

	// Every entry bundle; every entry's record hash and inclusion.
	entries, bundles := int64(0), 0
	for b := int64(0); b*256 < tree.N; b++ {
		w := tree.N - b*256
		if w > 256 {
			w = 256
		}
		p := "tile/entries/" + strings.TrimPrefix(tlog.Tile{H: 8, L: 0, N: b, W: int(w)}.Path(), "tile/8/0/")
		data, err := l.get(p)
		if err != nil {
			fail("entries: %v", err)
		}
		bundles++
		for k := int64(0); k < w; k++ {
			if len(data) < 2 || len(data) < 2+int(binary.BigEndian.Uint16(data)) {
				fail("entries: %s: truncated at entry %d", p, k)
			}
			size := int(binary.BigEndian.Uint16(data))
			entry := data[2 : 2+size]
			data = data[2+size:]
			index := b*256 + k
			leaf := tlog.RecordHash(entry)
			hs, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, index)})
			if err != nil {
				fail("entries: leaf hash %d from the tiles: %v", index, err)
			}
			if hs[0] != leaf {
				fail("entries: entry %d: tlog.RecordHash = %v, the level-0 tile holds %v", index, leaf, hs[0])
			}
			proof, err := tlog.ProveRecord(tree.N, index, hr)
			if err != nil {
				fail("entries: entry %d: tlog.ProveRecord: %v", index, err)
			}
			if err := tlog.CheckRecord(proof, tree.N, tree.Hash, index, leaf); err != nil {
				fail("entries: entry %d: tlog.CheckRecord: %v", index, err)
			}
			if *proofs {
				checkServedInclusion(l, tree, index, leaf, proof)
			}
			entries++
		}
		if len(data) != 0 {
			fail("entries: %s: %d bytes after its %d entries", p, len(data), w)
		}
	}

	// Consistency with earlier checkpoints.
	for _, file := range previous {
		text, err := os.ReadFile(file)
		if err != nil {
			usage("%v", err)
		}
		pn, err := note.Open(text, note.VerifierList(v))
		if err != nil {
			fail("previous checkpoint %s: note.Open: %v", file, err)
		}
		_, old, err := parseCheckpoint(pn.Text)
		if err != nil {
			fail("previous checkpoint %s: %v", file, err)
		}
		var got struct {
			Size1 int64    `json:"size1"`
			Size2 int64    `json:"size2"`
			Proof []string `json:"proof"`
		}
		body, err := l.get(fmt.Sprintf("proof/consistency?from=%d&to=%d", old.N, tree.N))
		if err != nil {
			fail("consistency %d to %d: %v", old.N, tree.N, err)
		}
		if err := json.Unmarshal(body, &got); err != nil || got.Size1 != old.N || got.Size2 != tree.N {
			fail("consistency %d to %d: bad answer %s", old.N, tree.N, body)
		}
		p := hashes("consistency proof", got.Proof)
		if err := tlog.CheckTree(p, tree.N, tree.Hash, old.N, old.Hash); err != nil {
			fail("consistency %d to %d: tlog.CheckTree: %v", old.N, tree.N, err)
		}
		want, err := tlog.ProveTree(tree.N, old.N, hr)
		if err != nil {
			fail("consistency %d to %d: tlog.ProveTree: %v", old.N, tree.N, err)
		}
		if fmt.Sprint(want) != fmt.Sprint(tlog.TreeProof(p)) {
			fail("consistency %d to %d: the served proof is not the one from the tiles", old.N, tree.N)
		}
	}

	cos := []string{}
	for _, c := range cosigners {
		cos = append(cos, fmt.Sprintf("%s at %d", c.name, *c.seen))
	}
	fmt.Printf("ok: %s size %d, signed by %s+%08x, %d cosignatures [%s], %d tiles, %d entries in %d bundles, %d consistency proofs, proofs served checked: %v\n",
		origin, tree.N, v.Name(), v.KeyHash(), len(cosigners), strings.Join(cos, ", "), tiles, entries, bundles, len(previous), *proofs)
}

func checkServedInclusion(l *httpLog, tree tlog.Tree, index int64, leaf tlog.Hash, want tlog.RecordProof) {
	body, err := l.get(fmt.Sprintf("proof/inclusion?index=%d", index))
	if err != nil {
		fail("inclusion %d: %v", index, err)
	}
	var got struct {
		Index    int64    `json:"index"`
		TreeSize int64    `json:"treeSize"`
		LeafHash string   `json:"leafHash"`
		Proof    []string `json:"proof"`
	}
	if err := json.Unmarshal(body, &got); err != nil || got.Index != index || got.TreeSize != tree.N {
		fail("inclusion %d: bad answer %s", index, body)
	}
	if got.LeafHash != leaf.String() {
		fail("inclusion %d: served leaf hash %s, the entry's is %v", index, got.LeafHash, leaf)
	}
	p := hashes("inclusion proof", got.Proof)
	if err := tlog.CheckRecord(p, tree.N, tree.Hash, index, leaf); err != nil {
		fail("inclusion %d: served proof: tlog.CheckRecord: %v", index, err)
	}
	if fmt.Sprint(p) != fmt.Sprint(want) {
		fail("inclusion %d: the served proof is not the one from the tiles", index)
	}
}
