package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

type fileJSON struct {
	AddedTokens   []addedJSON     `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
	Model         json.RawMessage `json:"model"`
}

type addedJSON struct {
	ID         *int    `json:"id"`
	Content    *string `json:"content"`
	SingleWord bool    `json:"single_word"`
	LStrip     bool    `json:"lstrip"`
	RStrip     bool    `json:"rstrip"`
	Normalized bool    `json:"normalized"`
	Special    bool    `json:"special"`
}

type modelJSON struct {
	Type                    string          `json:"type"`
	Vocab                   json.RawMessage `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
	UnkToken                *string         `json:"unk_token"`
	ByteFallback            bool            `json:"byte_fallback"`
	FuseUnk                 bool            `json:"fuse_unk"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Dropout                 *float64        `json:"dropout"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
}

// component is the common shape of normalizers, pre-tokenizers,
// post-processors and decoders: a "type" plus type-specific fields.
type component map[string]json.RawMessage

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

func decodeComponent(field string, raw json.RawMessage) (component, string, error) {
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, "", fieldErr(field, "want an object: %v", err)
	}
	var typ string
	if err := json.Unmarshal(c["type"], &typ); err != nil || typ == "" {
		return nil, "", fieldErr(field+".type", "missing or not a string")
	}
	return c, typ, nil
}

// get decodes an optional field of c into dst; a missing field or null
// leaves dst unchanged.
func (c component) get(field, key string, dst any) error {
	raw, ok := c[key]
	if !ok || isNull(raw) {
		return nil
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fieldErr(field+"."+key, "%v", err)
	}
	return nil
}

// pattern decodes {"String": s} or {"Regex": r}.
func (c component) pattern(field string) (literal string, regex string, isRegex bool, err error) {
	var p struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	}
	if err := c.get(field, "pattern", &p); err != nil {
		return "", "", false, err
	}
	switch {
	case p.String != nil:
		if *p.String == "" {
			return "", "", false, fieldErr(field+".pattern.String", "empty pattern")
		}
		return *p.String, "", false, nil
	case p.Regex != nil:
		return "", *p.Regex, true, nil
	}
	return "", "", false, fieldErr(field+".pattern", "want {\"String\": ...} or {\"Regex\": ...}")
}

func parse(data []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, &Error{Err: fmt.Errorf("invalid JSON: %w", err)}
	}
	if isNull(f.Model) {
		return nil, fieldErr("model", "missing")
	}
	t := &Tokenizer{bos: -1, eos: -1}
	byteLevel := false
	if !isNull(f.PreTokenizer) {
		p, bl, err := parsePreTok("pre_tokenizer", f.PreTokenizer, true)
		if err != nil {
			return nil, err
		}
		t.preTok, byteLevel = p, bl
	}
	if !isNull(f.Normalizer) {
		n, err := parseNormalizer("normalizer", f.Normalizer)
		if err != nil {
			return nil, err
		}
		t.norm = n
	}
	m, err := parseModel(f.Model, byteLevel)
	if err != nil {
		return nil, err
	}
	t.model = m

	// Vocabulary, then added tokens on top.
	t.vocab = make(map[string]int, len(m.vocab)+len(f.AddedTokens))
	maxID := -1
	for tok, id := range m.vocab {
		t.vocab[tok] = int(id)
		maxID = max(maxID, int(id))
	}
	added := make([]*addedToken, 0, len(f.AddedTokens))
	for i, a := range f.AddedTokens {
		field := fmt.Sprintf("added_tokens[%d]", i)
		if a.ID == nil || *a.ID < 0 {
			return nil, fieldErr(field+".id", "missing or negative")
		}
		if a.Content == nil || *a.Content == "" {
			return nil, fieldErr(field+".content", "missing or empty")
		}
		if !utf8.ValidString(*a.Content) {
			return nil, fieldErr(field+".content", "not valid UTF-8")
		}
		if old, ok := t.vocab[*a.Content]; ok && old != *a.ID {
			if _, inModel := m.vocab[*a.Content]; !inModel {
				return nil, fieldErr(field, "content %q has id %d but an earlier added token gave it id %d", *a.Content, *a.ID, old)
			}
		}
		tok := &addedToken{id: *a.ID, content: *a.Content, special: a.Special, singleWord: a.SingleWord,
			lstrip: a.LStrip, rstrip: a.RStrip, normalized: a.Normalized}
		added = append(added, tok)
		t.vocab[tok.content] = tok.id
		maxID = max(maxID, tok.id)
	}
	if maxID >= 1<<31-1 {
		return nil, fieldErr("model.vocab", "token id %d too large", maxID)
	}
	t.tokens = make([]string, maxID+1)
	t.present = make([]bool, maxID+1)
	t.special = make([]bool, maxID+1)
	for tok, id := range m.vocab {
		if t.present[id] {
			return nil, fieldErr("model.vocab", "id %d is used by both %q and %q", id, t.tokens[id], tok)
		}
		t.tokens[id], t.present[id] = tok, true
	}
	for i, a := range added {
		if t.present[a.id] && t.tokens[a.id] != a.content {
			if _, inModel := m.vocab[t.tokens[a.id]]; !inModel {
				return nil, fieldErr(fmt.Sprintf("added_tokens[%d].id", i), "id %d is also used by added token %q", a.id, t.tokens[a.id])
			}
		}
		t.tokens[a.id], t.present[a.id] = a.content, true
		t.special[a.id] = a.special
	}
	// Added tokens are matched before normalization unless marked normalized,
	// in which case their normalized form is matched in normalized text.
	for _, a := range added {
		key := a.content
		dst, plain := &t.rawAdded, &t.rawPlain
		if a.normalized && t.norm != nil {
			key = t.norm.normalize(key)
			dst, plain = &t.normAdded, &t.normPlain
		}
		if key == "" {
			continue
		}
		if *dst == nil {
			*dst = &trie{}
		}
		(*dst).insert(key, a)
		if !a.special {
			if *plain == nil {
				*plain = &trie{}
			}
			(*plain).insert(key, a)
		}
	}

	if !isNull(f.PostProcessor) {
		p, err := t.parsePost("post_processor", f.PostProcessor)
		if err != nil {
			return nil, err
		}
		t.post = p
		if len(p.prefix) > 0 {
			t.bos, t.bosFixed = p.prefix[0], true
		}
		if len(p.suffix) > 0 {
			t.eos, t.eosFixed = p.suffix[len(p.suffix)-1], true
		}
	}
	if !isNull(f.Decoder) {
		d, err := parseDecoder("decoder", f.Decoder)
		if err != nil {
			return nil, err
		}
		t.dec = d
	}
	if t.bos < 0 {
		t.bos = t.findSpecial("<s>", "<|begin_of_text|>", "<bos>")
	}
	if t.eos < 0 {
		t.eos = t.findSpecial("</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>")
	}
	return t, nil
}

func (t *Tokenizer) findSpecial(names ...string) int {
	for _, n := range names {
		if id, ok := t.vocab[n]; ok && t.special[id] {
			return id
		}
	}
	return -1
}

func parseModel(raw json.RawMessage, byteLevel bool) (*bpe, error) {
	var mj modelJSON
	if err := json.Unmarshal(raw, &mj); err != nil {
		return nil, fieldErr("model", "%v", err)
	}
	if mj.Type != "BPE" && !(mj.Type == "" && mj.Merges != nil) {
		return nil, unsupported("model.type", "model type %q (only BPE is implemented)", mj.Type)
	}
	if isNull(mj.Vocab) {
		return nil, fieldErr("model.vocab", "missing")
	}
	if mj.Dropout != nil && *mj.Dropout != 0 {
		return nil, unsupported("model.dropout", "BPE dropout %v", *mj.Dropout)
	}
	if mj.ContinuingSubwordPrefix != nil && *mj.ContinuingSubwordPrefix != "" {
		return nil, unsupported("model.continuing_subword_prefix", "%q", *mj.ContinuingSubwordPrefix)
	}
	if mj.EndOfWordSuffix != nil && *mj.EndOfWordSuffix != "" {
		return nil, unsupported("model.end_of_word_suffix", "%q", *mj.EndOfWordSuffix)
	}
	vocab, err := parseVocab(mj.Vocab)
	if err != nil {
		return nil, err
	}
	m := &bpe{
		vocab:        vocab,
		byteFallback: mj.ByteFallback,
		fuseUnk:      mj.FuseUnk,
		ignoreMerges: mj.IgnoreMerges,
		byteLevel:    byteLevel,
		unk:          -1,
		cache:        make(map[string][]int32),
	}
	if mj.UnkToken != nil {
		id, ok := m.vocab[*mj.UnkToken]
		if !ok {
			return nil, fieldErr("model.unk_token", "%q is not in model.vocab", *mj.UnkToken)
		}
		m.unk = id
	}
	for b := 0; b < 256; b++ {
		m.byteIDs[b], m.byteSym[b] = -1, -1
		if id, ok := m.vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.byteIDs[b] = id
		}
		if id, ok := m.vocab[string(byteToRune[b])]; ok {
			m.byteSym[b] = id
		}
	}
	if byteLevel {
		if err := m.validateByteLevel(); err != nil {
			return nil, fieldErr("model.vocab", "%v", err)
		}
	} else if m.unk < 0 {
		if !m.byteFallback {
			return nil, fieldErr("model", "a BPE model without a ByteLevel pre-tokenizer needs unk_token or byte_fallback to represent characters outside its vocabulary")
		}
		for b := 0; b < 256; b++ {
			if m.byteIDs[b] < 0 {
				return nil, fieldErr("model.vocab", "byte_fallback is set but token <0x%02X> is missing and there is no unk_token", b)
			}
		}
	}
	pairs, err := parseMerges(mj.Merges)
	if err != nil {
		return nil, err
	}
	if len(pairs) >= 1<<30 {
		return nil, fieldErr("model.merges", "%d merges is too many", len(pairs))
	}
	m.merges = newMergeTable(len(pairs))
	for i, p := range pairs {
		field := func() string { return fmt.Sprintf("model.merges[%d]", i) }
		a, ok := m.vocab[p[0]]
		if !ok {
			return nil, fieldErr(field(), "token %q is not in model.vocab", p[0])
		}
		b, ok := m.vocab[p[1]]
		if !ok {
			return nil, fieldErr(field(), "token %q is not in model.vocab", p[1])
		}
		id, ok := m.vocab[p[0]+p[1]]
		if !ok {
			return nil, fieldErr(field(), "merged token %q is not in model.vocab", p[0]+p[1])
		}
		k := pairKey(a, b)
		m.merges.insert(k, merge{rank: int32(i), id: id}) // a repeated pair keeps its first, lower rank
	}
	return m, nil
}

func parseNormalizer(field string, raw json.RawMessage) (normalizer, error) {
	c, typ, err := decodeComponent(field, raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "NFC":
		return unicodeNorm{norm.NFC}, nil
	case "NFD":
		return unicodeNorm{norm.NFD}, nil
	case "NFKC":
		return unicodeNorm{norm.NFKC}, nil
	case "NFKD":
		return unicodeNorm{norm.NFKD}, nil
	case "Lowercase":
		return lowercaseNorm{}, nil
	case "Prepend":
		var p string
		if err := c.get(field, "prepend", &p); err != nil {
			return nil, err
		}
		return prependNorm{p}, nil
	case "Replace":
		lit, re, isRe, err := c.pattern(field)
		if err != nil {
			return nil, err
		}
		if isRe {
			return nil, unsupported(field+".pattern.Regex", "regex %q in a Replace normalizer", re)
		}
		var content string
		if err := c.get(field, "content", &content); err != nil {
			return nil, err
		}
		return replaceNorm{lit, content}, nil
	case "Strip":
		var l, r bool
		if err := c.get(field, "strip_left", &l); err != nil {
			return nil, err
		}
		if err := c.get(field, "strip_right", &r); err != nil {
			return nil, err
		}
		return stripNorm{l, r}, nil
	case "Sequence":
		var items []json.RawMessage
		if err := c.get(field, "normalizers", &items); err != nil {
			return nil, err
		}
		var seq normSeq
		for i, it := range items {
			n, err := parseNormalizer(fmt.Sprintf("%s.normalizers[%d]", field, i), it)
			if err != nil {
				return nil, err
			}
			seq = append(seq, n)
		}
		return seq, nil
	}
	return nil, unsupported(field+".type", "normalizer %q", typ)
}

// parsePreTok returns the pre-tokenizer and whether it ends in ByteLevel.
// last is whether this component is the last step of the chain.
func parsePreTok(field string, raw json.RawMessage, last bool) (preTokenizer, bool, error) {
	c, typ, err := decodeComponent(field, raw)
	if err != nil {
		return nil, false, err
	}
	switch typ {
	case "Sequence":
		var items []json.RawMessage
		if err := c.get(field, "pretokenizers", &items); err != nil {
			return nil, false, err
		}
		var seq preTokSeq
		byteLevel := false
		for i, it := range items {
			p, bl, err := parsePreTok(fmt.Sprintf("%s.pretokenizers[%d]", field, i), it, last && i == len(items)-1)
			if err != nil {
				return nil, false, err
			}
			seq = append(seq, p)
			byteLevel = bl
		}
		return seq, byteLevel, nil
	case "Split":
		lit, re, isRe, err := c.pattern(field)
		if err != nil {
			return nil, false, err
		}
		p := &splitPreTok{literal: lit, behavior: "Isolated"}
		if isRe {
			if p.re, err = lookupPattern(re); err != nil {
				return nil, false, &Error{Field: field + ".pattern.Regex", Err: fmt.Errorf("%w: %v", ErrUnsupported, err)}
			}
		}
		if err := c.get(field, "behavior", &p.behavior); err != nil {
			return nil, false, err
		}
		switch p.behavior {
		case "Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous":
		default:
			return nil, false, fieldErr(field+".behavior", "unknown behavior %q", p.behavior)
		}
		if err := c.get(field, "invert", &p.invert); err != nil {
			return nil, false, err
		}
		return p, false, nil
	case "ByteLevel":
		p := byteLevelPreTok{useRegex: true}
		if err := c.get(field, "add_prefix_space", &p.addPrefixSpace); err != nil {
			return nil, false, err
		}
		if err := c.get(field, "use_regex", &p.useRegex); err != nil {
			return nil, false, err
		}
		if !last {
			return nil, false, unsupported(field, "a ByteLevel pre-tokenizer must be the last step")
		}
		return p, true, nil
	case "Digits":
		var p digitsPreTok
		if err := c.get(field, "individual_digits", &p.individual); err != nil {
			return nil, false, err
		}
		return p, false, nil
	case "Metaspace":
		p := metaspacePreTok{replacement: "\u2581", prependScheme: "always", split: true}
		if err := c.get(field, "replacement", &p.replacement); err != nil {
			return nil, false, err
		}
		if p.replacement == "" {
			return nil, false, fieldErr(field+".replacement", "empty")
		}
		if _, ok := c["prepend_scheme"]; ok {
			if err := c.get(field, "prepend_scheme", &p.prependScheme); err != nil {
				return nil, false, err
			}
		} else if raw, ok := c["add_prefix_space"]; ok {
			var add bool
			if err := json.Unmarshal(raw, &add); err != nil {
				return nil, false, fieldErr(field+".add_prefix_space", "%v", err)
			}
			if !add {
				p.prependScheme = "never"
			}
		}
		switch p.prependScheme {
		case "always", "first", "never":
		default:
			return nil, false, fieldErr(field+".prepend_scheme", "want always, first or never, got %q", p.prependScheme)
		}
		if err := c.get(field, "split", &p.split); err != nil {
			return nil, false, err
		}
		return p, false, nil
	}
	return nil, false, unsupported(field+".type", "pre-tokenizer %q", typ)
}

func (t *Tokenizer) parsePost(field string, raw json.RawMessage) (*postProcessor, error) {
	c, typ, err := decodeComponent(field, raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "ByteLevel":
		return &postProcessor{}, nil
	case "TemplateProcessing":
		var single []map[string]struct {
			ID string `json:"id"`
		}
		if err := c.get(field, "single", &single); err != nil {
			return nil, err
		}
		var specials map[string]struct {
			IDs []int `json:"ids"`
		}
		if err := c.get(field, "special_tokens", &specials); err != nil {
			return nil, err
		}
		p := &postProcessor{}
		seenA := false
		for i, item := range single {
			f := fmt.Sprintf("%s.single[%d]", field, i)
			if s, ok := item["Sequence"]; ok {
				if s.ID != "A" || seenA {
					return nil, fieldErr(f, "a single-sequence template must contain sequence A exactly once, got %q", s.ID)
				}
				seenA = true
				continue
			}
			s, ok := item["SpecialToken"]
			if !ok {
				return nil, fieldErr(f, "want {\"SpecialToken\": ...} or {\"Sequence\": ...}")
			}
			st, ok := specials[s.ID]
			if !ok {
				return nil, fieldErr(f+".SpecialToken.id", "%q is not in %s.special_tokens", s.ID, field)
			}
			for _, id := range st.IDs {
				if id < 0 || id >= len(t.tokens) || !t.present[id] {
					return nil, fieldErr(field+".special_tokens."+s.ID, "id %d is not in the vocabulary", id)
				}
			}
			if seenA {
				p.suffix = append(p.suffix, st.IDs...)
			} else {
				p.prefix = append(p.prefix, st.IDs...)
			}
		}
		if !seenA {
			return nil, fieldErr(field+".single", "template has no sequence A")
		}
		return p, nil
	case "BertProcessing", "RobertaProcessing":
		var cls, sep []json.RawMessage
		if err := c.get(field, "cls", &cls); err != nil {
			return nil, err
		}
		if err := c.get(field, "sep", &sep); err != nil {
			return nil, err
		}
		id := func(f string, v []json.RawMessage) (int, error) {
			var n int
			if len(v) != 2 || json.Unmarshal(v[1], &n) != nil || n < 0 || n >= len(t.tokens) || !t.present[n] {
				return 0, fieldErr(field+"."+f, "want [token, id] with an id in the vocabulary")
			}
			return n, nil
		}
		ci, err := id("cls", cls)
		if err != nil {
			return nil, err
		}
		si, err := id("sep", sep)
		if err != nil {
			return nil, err
		}
		return &postProcessor{prefix: []int{ci}, suffix: []int{si}}, nil
	case "Sequence":
		var items []json.RawMessage
		if err := c.get(field, "processors", &items); err != nil {
			return nil, err
		}
		out := &postProcessor{}
		for i, it := range items {
			p, err := t.parsePost(fmt.Sprintf("%s.processors[%d]", field, i), it)
			if err != nil {
				return nil, err
			}
			out.prefix = append(p.prefix, out.prefix...)
			out.suffix = append(out.suffix, p.suffix...)
		}
		return out, nil
	}
	return nil, unsupported(field+".type", "post-processor %q", typ)
}

func parseDecoder(field string, raw json.RawMessage) (decoder, error) {
	c, typ, err := decodeComponent(field, raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Replace":
		lit, re, isRe, err := c.pattern(field)
		if err != nil {
			return nil, err
		}
		if isRe {
			return nil, unsupported(field+".pattern.Regex", "regex %q in a Replace decoder", re)
		}
		var content string
		if err := c.get(field, "content", &content); err != nil {
			return nil, err
		}
		return replaceDecoder{lit, content}, nil
	case "Strip":
		var d stripDecoder
		var content string
		if err := c.get(field, "content", &content); err != nil {
			return nil, err
		}
		if utf8.RuneCountInString(content) != 1 {
			return nil, fieldErr(field+".content", "want one character, got %q", content)
		}
		d.content, _ = utf8.DecodeRuneInString(content)
		if err := c.get(field, "start", &d.start); err != nil {
			return nil, err
		}
		if err := c.get(field, "stop", &d.stop); err != nil {
			return nil, err
		}
		if d.start < 0 || d.stop < 0 {
			return nil, fieldErr(field, "start and stop must not be negative")
		}
		return d, nil
	case "Metaspace":
		d := metaspaceDecoder{replacement: "\u2581", stripFirst: true}
		if err := c.get(field, "replacement", &d.replacement); err != nil {
			return nil, err
		}
		if d.replacement == "" {
			return nil, fieldErr(field+".replacement", "empty")
		}
		var scheme string
		if err := c.get(field, "prepend_scheme", &scheme); err != nil {
			return nil, err
		}
		if scheme == "never" {
			d.stripFirst = false
		} else if scheme == "" {
			if err := c.get(field, "add_prefix_space", &d.stripFirst); err != nil {
				return nil, err
			}
		}
		return d, nil
	case "Sequence":
		var items []json.RawMessage
		if err := c.get(field, "decoders", &items); err != nil {
			return nil, err
		}
		var seq decoderSeq
		for i, it := range items {
			d, err := parseDecoder(fmt.Sprintf("%s.decoders[%d]", field, i), it)
			if err != nil {
				return nil, err
			}
			seq = append(seq, d)
		}
		return seq, nil
	}
	return nil, unsupported(field+".type", "decoder %q", typ)
}
