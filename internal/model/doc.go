// Package model is the data model every stage shares: Label, the interned
// label tables (LabelInterner builds them, LabelTable is an immutable
// snapshot), SeriesRef, Sample, the prompb label encoding (AppendLabel,
// LabelIter) and label-name validation.
//
// It is the leaf of the module's import graph: the standard library and
// xxhash only (internal/archtest checks it). Label sets are stored as their
// remote-write encodings, so that the encoder copies instead of marshalling,
// and a table holds no pointers, so that hundreds of thousands of series cost
// the garbage collector nothing to scan.
package model
