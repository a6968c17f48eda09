// Package jwtpeek reads the header and claims of a compact JWT without
// verifying anything: for showing a token in evidence and traces and for
// the harness's own bookkeeping, never for trusting a token.
package jwtpeek

import (
	"encoding/base64"
	"encoding/json"
	"strings"
)

// Header decodes the first segment of tok (base64url JSON), or nil when
// tok has no '.' or the segment is not a JSON object.
func Header(tok string) map[string]any {
	seg, _, ok := strings.Cut(tok, ".")
	if !ok {
		return nil
	}
	return object(seg)
}

// Claims decodes the second segment of tok (base64url JSON), or nil when
// tok has fewer than two segments or the segment is not a JSON object.
func Claims(tok string) map[string]any {
	_, rest, ok := strings.Cut(tok, ".")
	if !ok {
		return nil
	}
	seg, _, _ := strings.Cut(rest, ".")
	return object(seg)
}

func object(seg string) map[string]any {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m
}
