package tokenizer

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedToken is an entry of tokenizer.json's added_tokens.
type addedToken struct {
	id         int
	content    string
	special    bool
	singleWord bool
	lstrip     bool
	rstrip     bool
	normalized bool
}

// trie matches added tokens leftmost-longest, like the Aho-Corasick automaton
// of the tokenizers library (MatchKind::LeftmostLongest).
type trie struct {
	next  map[byte]*trie
	tok   *addedToken
	first [256]bool // root only: bytes that start some token
}

func (t *trie) insert(key string, tok *addedToken) {
	t.first[key[0]] = true
	n := t
	for i := 0; i < len(key); i++ {
		if n.next == nil {
			n.next = make(map[byte]*trie)
		}
		c := n.next[key[i]]
		if c == nil {
			c = &trie{}
			n.next[key[i]] = c
		}
		n = c
	}
	if n.tok == nil {
		n.tok = tok
	}
}

// longest returns the longest token that starts s at offset i and is
// acceptable to ok, and its length.
func (t *trie) longest(s string, i int, ok func(tok *addedToken, a, b int) bool) (*addedToken, int) {
	var best *addedToken
	bestLen := 0
	n := t
	for j := i; j < len(s); j++ {
		n = n.next[s[j]]
		if n == nil {
			break
		}
		if n.tok != nil && ok(n.tok, i, j+1) {
			best, bestLen = n.tok, j+1-i
		}
	}
	return best, bestLen
}

// section is a piece of the input: either an added token or text.
type section struct {
	text  string
	token *addedToken
	first bool // starts the input (for Metaspace's prepend_scheme "first")
}

// isWordChar is \w of the Rust regex crate (UTS #18 Annex C), the test that
// single_word tokens apply to their neighbours: Alphabetic, marks, decimal
// digits, connector punctuation and the join controls.
func isWordChar(r rune) bool {
	return unicode.IsLetter(r) || unicode.Is(unicode.Nl, r) || unicode.Is(unicode.Other_Alphabetic, r) ||
		unicode.IsMark(r) || unicode.Is(unicode.Nd, r) || unicode.Is(unicode.Pc, r) ||
		r == 0x200C || r == 0x200D
}

// splitAdded cuts s at the added tokens in t. A single_word token matches
// only between non-word characters; lstrip and rstrip tokens absorb the
// whitespace next to them (tokenizers/src/tokenizer/added_vocabulary.rs).
func splitAdded(t *trie, s string, first bool, dst []section) []section {
	if t == nil || t.next == nil {
		return append(dst, section{text: s, first: first})
	}
	accept := func(tok *addedToken, a, b int) bool {
		if !tok.singleWord {
			return true
		}
		if r, w := utf8.DecodeLastRuneInString(s[:a]); w > 0 && isWordChar(r) {
			return false
		}
		if r, w := utf8.DecodeRuneInString(s[b:]); w > 0 && isWordChar(r) {
			return false
		}
		return true
	}
	start := 0
	for i := 0; i < len(s); {
		if !t.first[s[i]] {
			i++
			continue
		}
		tok, n := t.longest(s, i, accept)
		if tok == nil {
			i++
			continue
		}
		textEnd := i
		if tok.lstrip {
			textEnd = len(strings.TrimRightFunc(s[start:i], unicode.IsSpace)) + start
		}
		if textEnd > start {
			dst = append(dst, section{text: s[start:textEnd], first: first && start == 0})
		}
		dst = append(dst, section{token: tok})
		i += n
		if tok.rstrip {
			i = len(s) - len(strings.TrimLeftFunc(s[i:], unicode.IsSpace))
		}
		start = i
	}
	if start < len(s) {
		dst = append(dst, section{text: s[start:], first: first && start == 0})
	}
	return dst
}
