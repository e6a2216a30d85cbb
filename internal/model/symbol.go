package model

// SymbolLabel returns the name and value of symbol i (read-only), for
// consumers that look labels up once per symbol and cache the answer, as
// remote write's tenant routing does. ok is false for a malformed encoding.
func (t *LabelTable) SymbolLabel(i uint32) (name, value []byte, ok bool) {
	name, value, _, ok = parseLabel(t.Symbol(i))
	return name, value, ok
}
