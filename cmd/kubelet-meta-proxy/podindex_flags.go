package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/model"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/podindex"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relay"
)

// podOptions turn on the pod index: pod labels, workload labels and the
// pod-on-node check. All off by default; any of them needs list/watch on
// pods (and, for workloads, replicasets and jobs) in the relay's
// ClusterRole: deploy/kustomize/components/pod-enrichment, or the chart's
// podEnrichment value.
type podOptions struct {
	PodLabels      string
	PodLabelPrefix string
	WorkloadLabels bool
	NodeCheck      string // "" until set: plain with a pod feature on, else off
	Precedence     string
}

const (
	precedenceNamespace = "namespace"
	precedencePod       = "pod"
)

func (o *podOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.PodLabels, "pod-labels", "", "Pod labels to add to the pod's series, comma-separated; * takes all. Keys become label names as for --namespace-labels. Turns the pod index on (RBAC: list/watch pods).")
	fs.StringVar(&o.PodLabelPrefix, "pod-label-prefix", "", "Prefix for the label names --pod-labels adds, e.g. pod_.")
	fs.BoolVar(&o.WorkloadLabels, "workload-labels", false, "Add workload and workload_type to every pod's series, as kubernetes-mixin's namespace_workload_pod:kube_pod_owner:relabel computes them. Turns the pod index on (RBAC: list/watch pods, replicasets, jobs).")
	fs.StringVar(&o.NodeCheck, "pod-node-check", "", `For kubelet targets, what to do with a series naming a pod the apiserver does not place on the scraped node: "plain" (no namespace- or pod-derived labels), "drop", or "off". Default plain when --pod-labels or --workload-labels is set, else off; setting it turns the pod index on. Pods deleted less than 5m ago still count as on their node; unknown pods get 1m after the start or a watch error.`)
	fs.StringVar(&o.Precedence, "label-precedence", precedenceNamespace, `Which label keeps a name that a namespace label and a pod label (or workload, workload_type) share: "namespace" or "pod". The other is renamed NAME_conflictN.`)
}

func (o *podOptions) Validate() error {
	var errs []error
	switch o.NodeCheck {
	case "", "off", "plain", "drop":
	default:
		errs = append(errs, fmt.Errorf(`--pod-node-check=%q: want "plain", "drop" or "off"`, o.NodeCheck))
	}
	if o.Precedence != precedenceNamespace && o.Precedence != precedencePod {
		errs = append(errs, fmt.Errorf(`--label-precedence=%q: want "namespace" or "pod"`, o.Precedence))
	}
	if o.PodLabelPrefix != "" && !model.IsValidLabelName(o.PodLabelPrefix) {
		errs = append(errs, fmt.Errorf("--pod-label-prefix=%q: must itself be a valid label name start ([a-zA-Z_][a-zA-Z0-9_]*)", o.PodLabelPrefix))
	}
	if o.PodLabelPrefix != "" && o.PodLabels == "" {
		errs = append(errs, errors.New("--pod-label-prefix needs --pod-labels"))
	}
	return errors.Join(errs...)
}

func (o *podOptions) labels() enrich.KeyMapper {
	allow, all := enrich.ParseAllowlist(o.PodLabels)
	return enrich.KeyMapper{Prefix: o.PodLabelPrefix, Allow: allow, AllowAll: all}
}

// check is the effective --pod-node-check.
func (o *podOptions) check() relay.NodeCheck {
	switch o.NodeCheck {
	case "plain":
		return relay.NodeCheckPlain
	case "drop":
		return relay.NodeCheckDrop
	case "off":
		return relay.NodeCheckOff
	}
	if o.labels().Enabled() || o.WorkloadLabels {
		return relay.NodeCheckPlain
	}
	return relay.NodeCheckOff
}

// enabled reports whether the pod index runs at all: a pod feature is on,
// or --pod-node-check was set (even to off: asked for, the index runs, and
// series get nothing from it).
func (o *podOptions) enabled() bool {
	return o.labels().Enabled() || o.WorkloadLabels || o.NodeCheck != ""
}

// index builds the pod index, or returns nil and the zero PodConfig when
// no pod feature is on. In kubelet mode with --node-name-or-ip NAME the
// index watches that node's pods only (field selector spec.nodeName).
func (o *podOptions) index(k *kubeOptions, c *clients, logger *slog.Logger, reg prometheus.Registerer) (*podindex.Index, relay.PodConfig, error) {
	if !o.enabled() {
		return nil, relay.PodConfig{}, nil
	}
	opts := podindex.DefaultOptions()
	opts.Labels = o.labels()
	opts.Workload = o.WorkloadLabels
	opts.Logger = logger
	opts.Registerer = reg
	if k.Mode == modeKubelet && k.NodeNameOrIP != "" {
		if net.ParseIP(k.NodeNameOrIP) != nil {
			logger.Warn("--node-name-or-ip is an address, not a node name: the pod index watches every node's pods", "node_name_or_ip", k.NodeNameOrIP)
		} else {
			opts.Node = k.NodeNameOrIP
		}
	}
	cfg, err := opts.Config()
	if err != nil {
		return nil, relay.PodConfig{}, err
	}
	ix := podindex.New(cfg, c.kube, c.metadata)
	prec := relay.NamespaceFirst
	if o.Precedence == precedencePod {
		prec = relay.PodFirst
	}
	logger.Info("pod index on", "pod_labels", o.PodLabels, "workload_labels", o.WorkloadLabels,
		"pod_node_check", o.check().String(), "label_precedence", prec.String(), "node", opts.Node,
		"deleted_grace", opts.DeletedGrace, "unknown_grace", opts.UnknownGrace)
	return ix, relay.PodConfig{Source: ix, Check: o.check(), Precedence: prec}, nil
}
