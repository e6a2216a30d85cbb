// Package promconfig reads the relay's --config.file: the global.external_labels
// and remote_write sections of a prometheus.yml, parsed with Prometheus's
// own config types, mapped onto remotewrite's configuration. It is apart
// from remotewrite because Prometheus's config package brings service
// discovery (and client-go) with it.
package promconfig

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	commonmodel "github.com/prometheus/common/model"
	promconfig "github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	yamlv2 "go.yaml.in/yaml/v2"
	yamlv3 "go.yaml.in/yaml/v3"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/remotewrite"
)

// File is what Load reads.
type File struct {
	// ExternalLabels is global.external_labels, sorted by name.
	ExternalLabels []model.Label
	Endpoints      []remotewrite.EndpointConfig
}

// promFile is the accepted part of a prometheus.yml. The sections are
// Prometheus's own types, so their defaults and validation are Prometheus's.
type promFile struct {
	Global      promconfig.GlobalConfig         `yaml:"global"`
	RemoteWrite []*promconfig.RemoteWriteConfig `yaml:"remote_write"`
}

// yamlLine finds "line N" in yaml's error messages, which count from 1.
var yamlLine = regexp.MustCompile(`line (\d+)`)

// yamlType is the Go type yaml names in unknown-field errors: noise to a
// user ("field bogus not found in type config.plain").
var yamlType = regexp.MustCompile(` in type [\w.]+`)

// Load reads a file whose global.external_labels and
// remote_write sections are Prometheus's (a block copied from a
// prometheus.yml works unchanged). Queue settings the file leaves out take
// defaults' (the flags' defaults). Relative file names in it are taken
// relative to the file's directory, as Prometheus does. Errors name the file
// and the line.
func Load(path string, defaults remotewrite.EndpointConfig) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, err
	}
	return parse(b, path, defaults)
}

func parse(b []byte, path string, defaults remotewrite.EndpointConfig) (File, error) {
	items, err := remoteWriteNodes(b)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	var pf promFile
	if err := yamlv2.UnmarshalStrict(b, &pf); err != nil {
		return File{}, locate(path, items, err)
	}
	var out File
	pf.Global.ExternalLabels.Range(func(l labels.Label) {
		out.ExternalLabels = append(out.ExternalLabels, model.Label{Name: l.Name, Value: l.Value})
	})
	dir := filepath.Dir(path)
	for i, rw := range pf.RemoteWrite {
		line := 0
		var queueKeys []string
		if i < len(items) {
			line, queueKeys = items[i].line, items[i].queueKeys
		}
		at := func(err error) error {
			return fmt.Errorf("%s:%d: remote_write[%d]: %w", path, line, i, err)
		}
		if rw == nil {
			return File{}, at(errors.New("empty entry"))
		}
		if err := rw.Validate(commonmodel.UTF8Validation); err != nil {
			return File{}, at(err)
		}
		rw.SetDirectory(dir)
		e, err := fromPrometheus(rw, queueKeys, defaults)
		if err != nil {
			return File{}, at(err)
		}
		e.Origin = remotewrite.Origin{File: path, Index: i, Line: line, List: "remote_write"}
		out.Endpoints = append(out.Endpoints, e)
	}
	return out, nil
}

// rwNode is where one remote_write entry is, and which queue_config keys it
// sets: those left out keep the relay's defaults, not Prometheus's (the
// relay's queue is not Prometheus's, see fromPrometheus).
type rwNode struct {
	line      int
	node      *yamlv3.Node
	queueKeys []string
}

func remoteWriteNodes(b []byte) ([]rwNode, error) {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yamlv3.MappingNode {
		return nil, nil // the strict parse reports what is wrong
	}
	seq := mapValue(doc.Content[0], "remote_write")
	if seq == nil || seq.Kind != yamlv3.SequenceNode {
		return nil, nil
	}
	var out []rwNode
	for _, it := range seq.Content {
		n := rwNode{line: it.Line, node: it}
		if q := mapValue(it, "queue_config"); q != nil && q.Kind == yamlv3.MappingNode {
			for k := 0; k+1 < len(q.Content); k += 2 {
				n.queueKeys = append(n.queueKeys, q.Content[k].Value)
			}
		}
		out = append(out, n)
	}
	return out, nil
}

func mapValue(m *yamlv3.Node, key string) *yamlv3.Node {
	if m.Kind != yamlv3.MappingNode {
		return nil
	}
	for k := 0; k+1 < len(m.Content); k += 2 {
		if m.Content[k].Value == key {
			return m.Content[k+1]
		}
	}
	return nil
}

// locate adds the file and line to a parse error. yaml's own errors carry
// the line; the checks of Prometheus's UnmarshalYAML methods do not, so the
// entries are decoded one by one to find the one at fault.
func locate(path string, items []rwNode, err error) error {
	var te *yamlv2.TypeError
	if errors.As(err, &te) {
		errs := make([]error, 0, len(te.Errors))
		for _, e := range te.Errors {
			e = yamlType.ReplaceAllString(e, "")
			if m := yamlLine.FindStringSubmatch(e); m != nil {
				e = fmt.Sprintf("%s:%s: %s", path, m[1], strings.TrimPrefix(e, m[0]+": "))
			} else {
				e = path + ": " + e
			}
			errs = append(errs, errors.New(e))
		}
		return errors.Join(errs...)
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		msg = strings.Replace(msg, m[0]+": ", "", 1)
		return fmt.Errorf("%s:%s: %s", path, m[1], msg)
	}
	for i, it := range items {
		var rw promconfig.RemoteWriteConfig
		if derr := it.node.Decode(&rw); derr != nil {
			return fmt.Errorf("%s:%d: remote_write[%d]: %s", path, it.line, i, msg)
		}
	}
	return fmt.Errorf("%s: %s", path, msg)
}

// fromPrometheus maps one Prometheus remote_write entry onto the relay's
// endpoint configuration. The relay's queue has a fixed number of shards,
// each owning the series of whole targets (that is what keeps every series
// in order), so max_shards is the shard count, capacity (per shard in
// Prometheus) times the shards is the endpoint's capacity, and min_shards
// has nothing to set.
func fromPrometheus(rw *promconfig.RemoteWriteConfig, queueKeys []string, defaults remotewrite.EndpointConfig) (remotewrite.EndpointConfig, error) {
	if rw.ProtobufMessage != "" && rw.ProtobufMessage != remoteapi.WriteV1MessageType {
		return remotewrite.EndpointConfig{}, fmt.Errorf("protobuf_message: only %s (remote write 1.0) is supported, got %s", remoteapi.WriteV1MessageType, rw.ProtobufMessage)
	}
	if rw.RoundRobinDNS {
		return remotewrite.EndpointConfig{}, errors.New("round_robin_dns: not supported by the relay")
	}
	if rw.QueueConfig.SampleAgeLimit != 0 {
		return remotewrite.EndpointConfig{}, errors.New("queue_config.sample_age_limit: not supported by the relay (its queue drops the oldest samples when full instead)")
	}
	e := remotewrite.EndpointConfig{
		URL:     rw.URL.String(),
		Name:    rw.Name,
		Timeout: time.Duration(rw.RemoteTimeout),
		Queue:   defaults.Queue,
		// Prometheus's syntax has no tenant routing: the flags' (--tenant-label...) apply.
		Tenant: defaults.Tenant,
		Prom: &remotewrite.PromSettings{
			HTTP:         rw.HTTPClientConfig,
			SigV4:        rw.SigV4Config,
			AzureAD:      rw.AzureADConfig,
			GoogleIAM:    rw.GoogleIAMConfig,
			WriteRelabel: rw.WriteRelabelConfigs,
			Metadata: remotewrite.MetadataConfig{
				Send:              rw.MetadataConfig.Send,
				SendInterval:      time.Duration(rw.MetadataConfig.SendInterval),
				MaxSamplesPerSend: rw.MetadataConfig.MaxSamplesPerSend,
			},
		},
	}
	if len(rw.Headers) > 0 {
		e.Headers = make(map[string]string, len(rw.Headers))
		for k, v := range rw.Headers {
			ck := http.CanonicalHeaderKey(k)
			if _, dup := e.Headers[ck]; dup {
				return remotewrite.EndpointConfig{}, fmt.Errorf("headers: %q is given more than once (header names are case-insensitive)", ck)
			}
			e.Headers[ck] = v
		}
	}
	q, pq := &e.Queue, rw.QueueConfig
	has := func(k string) bool { return slices.Contains(queueKeys, k) }
	if has("max_shards") {
		q.Shards = pq.MaxShards
	}
	if has("capacity") {
		q.Capacity = pq.Capacity * q.Shards
	}
	if has("max_samples_per_send") {
		q.MaxSamplesPerSend = pq.MaxSamplesPerSend
	}
	if has("batch_send_deadline") {
		q.BatchSendDeadline = time.Duration(pq.BatchSendDeadline)
	}
	if has("min_backoff") {
		q.MinBackoff = time.Duration(pq.MinBackoff)
	}
	if has("max_backoff") {
		q.MaxBackoff = time.Duration(pq.MaxBackoff)
	}
	return e, nil
}
