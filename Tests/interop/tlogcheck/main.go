// Command tlogcheck checks the Ledger module's output with Go's own implementation,
// golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog, so that the two agree on signed
// notes, RFC 6962 hashing, proofs and tiles.
//
// Usage: tlogcheck <file.json>
//
// (or "tlogcheck served ..." to check a running node over HTTP; see served.go)
//
//	{
//	  "verifierKey": "<name>+<key ID>+<base64 key>",
//	  "signedCheckpoint": "<C2SP checkpoint as a signed note>",
//	  "inclusion": [{"index": 3, "treeSize": 10, "leafHash": "<b64>", "proof": ["<b64>", ...],
//	                 "root": "<b64, optional: default the checkpoint's, then treeSize must be its size>",
//	                 "entry": "<b64 of the entry, optional: its RecordHash must be leafHash>"}],
//	  "consistency": [{"size1": 5, "size2": 10, "root1": "<b64>", "root2": "<b64>", "proof": [...]}],
//	  "tiles": {"tile/0/000": "<b64 of the tile's bytes>", ...}     (optional, C2SP tlog-tiles paths)
//	}
//
// With tiles, tlog.TileHashReader (height 8) reads the C2SP paths (Go writes them with the height,
// "tile/8/0/000"; C2SP leaves it out), authenticates them against the checkpoint, and the tree
// hash and a proof for every inclusion index are computed from them and checked too.
//
// Exits 0 when everything verifies, 1 naming the first failure ("FAIL: ..."), 2 on bad input.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type inclusion struct {
	Index    int64    `json:"index"`
	TreeSize int64    `json:"treeSize"`
	LeafHash string   `json:"leafHash"`
	Proof    []string `json:"proof"`
	Root     string   `json:"root"`
	Entry    *string  `json:"entry"`
}

type consistency struct {
	Size1 int64    `json:"size1"`
	Size2 int64    `json:"size2"`
	Root1 string   `json:"root1"`
	Root2 string   `json:"root2"`
	Proof []string `json:"proof"`
}

type input struct {
	VerifierKey      string            `json:"verifierKey"`
	SignedCheckpoint string            `json:"signedCheckpoint"`
	Inclusion        []inclusion       `json:"inclusion"`
	Consistency      []consistency     `json:"consistency"`
	Tiles            map[string]string `json:"tiles"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func usage(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "tlogcheck: "+format+"\n", args...)
	os.Exit(2)
}

func hash(what, s string) tlog.Hash {
	h, err := tlog.ParseHash(s)
	if err != nil {
		usage("%s: %v", what, err)
	}
	return h
}

func hashes(what string, ss []string) []tlog.Hash {
	out := make([]tlog.Hash, len(ss))
	for i, s := range ss {
		out[i] = hash(fmt.Sprintf("%s[%d]", what, i), s)
	}
	return out
}

// parseCheckpoint parses C2SP tlog-checkpoint note text: origin, decimal size, base64 root,
// then optional non-empty extension lines, every line ending in a newline.
func parseCheckpoint(text string) (origin string, tree tlog.Tree, err error) {
	if !strings.HasSuffix(text, "\n") {
		return "", tree, fmt.Errorf("checkpoint does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) < 3 {
		return "", tree, fmt.Errorf("checkpoint has %d lines, want at least 3", len(lines))
	}
	for i, l := range lines {
		if l == "" {
			return "", tree, fmt.Errorf("checkpoint line %d is empty", i+1)
		}
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return "", tree, fmt.Errorf("checkpoint size %q is not a canonical decimal", lines[1])
	}
	h, err := tlog.ParseHash(lines[2])
	if err != nil {
		return "", tree, fmt.Errorf("checkpoint root %q: %v", lines[2], err)
	}
	return lines[0], tlog.Tree{N: n, Hash: h}, nil
}

// tileReader serves tlog's height-8 tiles from C2SP paths.
type tileReader struct {
	tiles map[string][]byte
	read  int
}

func (r *tileReader) Height() int { return 8 }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		p := "tile/" + strings.TrimPrefix(t.Path(), "tile/8/")
		data, ok := r.tiles[p]
		if !ok {
			return nil, fmt.Errorf("tile %s was not provided", p)
		}
		out[i] = data
		r.read++
	}
	return out, nil
}

func (r *tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "served" {
		served(os.Args[2:])
		return
	}
	if len(os.Args) != 2 {
		usage("usage: tlogcheck <file.json>")
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		usage("%v", err)
	}
	var in input
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		usage("%s: %v", os.Args[1], err)
	}

	// The signed note, with Go's note package.
	v, err := note.NewVerifier(in.VerifierKey)
	if err != nil {
		fail("verifier key %q: %v", in.VerifierKey, err)
	}
	n, err := note.Open([]byte(in.SignedCheckpoint), note.VerifierList(v))
	if err != nil {
		fail("signed checkpoint: note.Open: %v", err)
	}
	if len(n.Sigs) == 0 || n.Sigs[0].Name != v.Name() || n.Sigs[0].Hash != v.KeyHash() {
		fail("signed checkpoint: not signed by %s", v.Name())
	}
	origin, tree, err := parseCheckpoint(n.Text)
	if err != nil {
		fail("%v", err)
	}
	if origin != v.Name() {
		fail("checkpoint origin %q is not the key name %q", origin, v.Name())
	}

	// Inclusion proofs, with tlog.CheckRecord.
	for i, p := range in.Inclusion {
		what := fmt.Sprintf("inclusion[%d] (index %d, tree size %d)", i, p.Index, p.TreeSize)
		leaf := hash(what+" leafHash", p.LeafHash)
		if p.Entry != nil {
			entry, err := base64.StdEncoding.DecodeString(*p.Entry)
			if err != nil {
				usage("%s entry: %v", what, err)
			}
			if got := tlog.RecordHash(entry); got != leaf {
				fail("%s: tlog.RecordHash(entry) = %v, want leafHash %v", what, got, leaf)
			}
		}
		root := tree.Hash
		if p.Root != "" {
			root = hash(what+" root", p.Root)
		} else if p.TreeSize != tree.N {
			usage("%s: no root given and tree size is not the checkpoint's %d", what, tree.N)
		}
		if err := tlog.CheckRecord(hashes(what+" proof", p.Proof), p.TreeSize, root, p.Index, leaf); err != nil {
			fail("%s: tlog.CheckRecord: %v", what, err)
		}
	}

	// Consistency proofs, with tlog.CheckTree (new tree first, then the old one).
	for i, p := range in.Consistency {
		what := fmt.Sprintf("consistency[%d] (%d to %d)", i, p.Size1, p.Size2)
		r1 := hash(what+" root1", p.Root1)
		r2 := hash(what+" root2", p.Root2)
		if err := tlog.CheckTree(hashes(what+" proof", p.Proof), p.Size2, r2, p.Size1, r1); err != nil {
			fail("%s: tlog.CheckTree: %v", what, err)
		}
	}

	// Tiles, with tlog.TileHashReader: authenticated against the checkpoint, then used to
	// compute the tree hash and a proof of every inclusion index.
	checkedTiles := 0
	if len(in.Tiles) > 0 {
		tr := &tileReader{tiles: map[string][]byte{}}
		for p, b := range in.Tiles {
			data, err := base64.StdEncoding.DecodeString(b)
			if err != nil {
				usage("tile %s: %v", p, err)
			}
			tr.tiles[p] = data
		}
		hr := tlog.TileHashReader(tree, tr)
		th, err := tlog.TreeHash(tree.N, hr)
		if err != nil {
			fail("tiles: tlog.TreeHash: %v", err)
		}
		if th != tree.Hash {
			fail("tiles: tree hash %v, checkpoint says %v", th, tree.Hash)
		}
		for i, p := range in.Inclusion {
			if p.TreeSize != tree.N {
				continue
			}
			proof, err := tlog.ProveRecord(tree.N, p.Index, hr)
			if err != nil {
				fail("tiles: inclusion[%d]: tlog.ProveRecord: %v", i, err)
			}
			if err := tlog.CheckRecord(proof, tree.N, tree.Hash, p.Index, hash("leafHash", p.LeafHash)); err != nil {
				fail("tiles: inclusion[%d]: proof from tiles: tlog.CheckRecord: %v", i, err)
			}
			if len(proof) != len(p.Proof) {
				fail("tiles: inclusion[%d]: proof from tiles has %d hashes, the ledger's %d", i, len(proof), len(p.Proof))
			}
			for j := range proof {
				if proof[j].String() != p.Proof[j] {
					fail("tiles: inclusion[%d]: proof hash %d from tiles is %v, the ledger's %s", i, j, proof[j], p.Proof[j])
				}
			}
		}
		for i, p := range in.Consistency {
			if p.Size2 != tree.N {
				continue
			}
			proof, err := tlog.ProveTree(tree.N, p.Size1, hr)
			if err != nil {
				fail("tiles: consistency[%d]: tlog.ProveTree: %v", i, err)
			}
			if err := tlog.CheckTree(proof, tree.N, tree.Hash, p.Size1, hash("root1", p.Root1)); err != nil {
				fail("tiles: consistency[%d]: proof from tiles: tlog.CheckTree: %v", i, err)
			}
		}
		checkedTiles = tr.read
	}

	fmt.Printf("ok: %s size %d, signature by %s+%08x, %d inclusion and %d consistency proofs, %d tile reads\n",
		origin, tree.N, v.Name(), v.KeyHash(), len(in.Inclusion), len(in.Consistency), checkedTiles)
}
