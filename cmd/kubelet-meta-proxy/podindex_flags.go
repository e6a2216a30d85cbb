package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/metadata"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/enrich"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/kubeclient"
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
	DeletedGrace   time.Duration
	UnknownGrace   time.Duration
}

const (
	precedenceNamespace = "namespace"
	precedencePod       = "pod"
)

func (o *podOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.PodLabels, "pod-labels", "", "Pod labels to add to the pod's series, comma-separated; * takes all. Keys become label names as for --namespace-labels. Turns the pod index on (RBAC: list/watch pods).")
	fs.StringVar(&o.PodLabelPrefix, "pod-label-prefix", "", "Prefix for the label names --pod-labels adds, e.g. pod_.")
	fs.BoolVar(&o.WorkloadLabels, "workload-labels", false, "Add workload and workload_type to every pod's series, as kubernetes-mixin's namespace_workload_pod:kube_pod_owner:relabel computes them. Turns the pod index on (RBAC: list/watch pods, replicasets, jobs).")
	fs.StringVar(&o.NodeCheck, "pod-node-check", "", `For kubelet targets, what to do with a series naming a pod the apiserver does not place on the scraped node: "plain" (no namespace- or pod-derived labels), "drop", or "off". Default plain when --pod-labels or --workload-labels is set, else off; setting it turns the pod index on. Tolerances: --pod-deleted-grace, --pod-unknown-grace.`)
	fs.DurationVar(&o.DeletedGrace, "pod-deleted-grace", podindex.DefaultDeletedGrace, "How long a deleted pod still counts as on its node, and keeps its labels, for the pod-on-node check and enrichment (cAdvisor keeps a deleted pod's cgroup for a while). 0 ends it at the delete event.")
	fs.DurationVar(&o.UnknownGrace, "pod-unknown-grace", podindex.DefaultUnknownGrace, "How long after the pod index's start, and after any list/watch error, a pod the index does not know gets the benefit of the doubt (enriched, not counted as off its node). 0: none.")
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
	if o.DeletedGrace < 0 {
		errs = append(errs, fmt.Errorf("--pod-deleted-grace=%s: must not be negative", o.DeletedGrace))
	}
	if o.UnknownGrace < 0 {
		errs = append(errs, fmt.Errorf("--pod-unknown-grace=%s: must not be negative", o.UnknownGrace))
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

// options are the pod index's options from the flags. In kubelet mode with
// --node-name-or-ip NAME the index watches that node's pods only (field
// selector spec.nodeName).
func (o *podOptions) options(k *kubeOptions, logger *slog.Logger, reg prometheus.Registerer) podindex.Options {
	opts := podindex.DefaultOptions()
	opts.Labels = o.labels()
	opts.Workload = o.WorkloadLabels
	opts.DeletedGrace, opts.UnknownGrace = o.DeletedGrace, o.UnknownGrace
	opts.Logger = logger
	opts.Registerer = reg
	if k.Mode == modeKubelet && k.NodeNameOrIP != "" {
		if net.ParseIP(k.NodeNameOrIP) != nil {
			logger.Warn("--node-name-or-ip is an address, not a node name: the pod index watches every node's pods", "node_name_or_ip", k.NodeNameOrIP)
		} else {
			opts.Node = k.NodeNameOrIP
		}
	}
	return opts
}

func (o *podOptions) relayConfig(src relay.PodSource) relay.PodConfig {
	prec := relay.NamespaceFirst
	if o.Precedence == precedencePod {
		prec = relay.PodFirst
	}
	return relay.PodConfig{Source: src, Check: o.check(), Precedence: prec}
}

func (o *podOptions) logOn(logger *slog.Logger, opts podindex.Options, pc relay.PodConfig) {
	logger.Info("pod index on", "pod_labels", o.PodLabels, "workload_labels", o.WorkloadLabels,
		"pod_node_check", pc.Check.String(), "label_precedence", pc.Precedence.String(), "node", opts.Node,
		"deleted_grace", opts.DeletedGrace, "unknown_grace", opts.UnknownGrace)
}

// index builds the pod index (list/watches; Run starts them), or returns nil
// and the zero PodConfig when no pod feature is on.
func (o *podOptions) index(k *kubeOptions, c *clients, logger *slog.Logger, reg prometheus.Registerer) (*podindex.Index, relay.PodConfig, error) {
	if !o.enabled() {
		return nil, relay.PodConfig{}, nil
	}
	opts := o.options(k, logger, reg)
	cfg, err := opts.Config()
	if err != nil {
		return nil, relay.PodConfig{}, err
	}
	ix := podindex.New(cfg, c.kube, c.metadata)
	pc := o.relayConfig(ix)
	o.logOn(logger, opts, pc)
	return ix, pc, nil
}

// listIndex is index for scrape-once: the pods (and, with workloads,
// ReplicaSets and Jobs) are listed once, nothing watches.
func (o *podOptions) listIndex(ctx context.Context, k *kubeOptions, c *clients, logger *slog.Logger) (*podindex.Index, relay.PodConfig, error) {
	if !o.enabled() {
		return nil, relay.PodConfig{}, nil
	}
	opts := o.options(k, logger, nil)
	cfg, err := opts.Config()
	if err != nil {
		return nil, relay.PodConfig{}, err
	}
	ix := podindex.NewStatic(cfg)
	if err := listInto(ctx, ix, c.kube, c.metadata, opts.Node, opts.Workload); err != nil {
		return nil, relay.PodConfig{}, err
	}
	pc := o.relayConfig(ix)
	o.logOn(logger, opts, pc)
	return ix, pc, nil
}

// listPage is how many objects one list request asks for.
const listPage = 500

// listInto feeds a static index from paginated lists: the pods (on node, if
// set) and, with workload, every ReplicaSet and Job as metadata.
func listInto(ctx context.Context, ix *podindex.Index, kube kubeclient.Interface, meta metadata.Interface, node string, workload bool) error {
	opts := metav1.ListOptions{Limit: listPage}
	if node != "" {
		opts.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
	}
	for {
		list, err := kube.Pods(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return fmt.Errorf("listing pods (RBAC: list pods): %w", err)
		}
		for i := range list.Items {
			ix.SetPod(&list.Items[i])
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			break
		}
	}
	if !workload {
		return nil
	}
	for _, r := range []struct {
		gvr  schema.GroupVersionResource
		kind string
	}{
		{schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}, "ReplicaSet"},
		{schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}, "Job"},
	} {
		opts := metav1.ListOptions{Limit: listPage}
		for {
			list, err := meta.Resource(r.gvr).List(ctx, opts)
			if err != nil {
				return fmt.Errorf("listing %s (RBAC: list %s in group %s): %w", r.gvr.Resource, r.gvr.Resource, r.gvr.Group, err)
			}
			for i := range list.Items {
				ix.SetOwner(r.kind, &list.Items[i])
			}
			if opts.Continue = list.Continue; opts.Continue == "" {
				break
			}
		}
	}
	return nil
}
