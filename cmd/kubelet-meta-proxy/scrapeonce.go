package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/relay"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/view"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/nsindex"
	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/internal/scrape"
)

type scrapeOnceOptions struct {
	commonOptions
	Nodes  []string
	Output string
}

func newScrapeOnceCommand() *cobra.Command {
	o := &scrapeOnceOptions{}
	cmd := &cobra.Command{
		Use:   "scrape-once",
		Short: "Scrape every node (or --node, or --target) once and print the enriched exposition",
		Long: `scrape-once scrapes every node (or only --node NAME, or only the --target URLs), enriches
the samples from their Namespaces (and, with the pod flags, their Pods, listed once) exactly as run does, and writes the text exposition to stdout
or --output. Each failed target is reported on stderr, and the exit code is 1 if any failed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	o.commonOptions.AddFlags(fs)
	fs.StringArrayVar(&o.Nodes, "node", nil, "Scrape only this node (repeatable).")
	fs.StringVarP(&o.Output, "output", "o", "", "Write the exposition to this file instead of stdout.")
	return cmd
}

var namespacesGVR = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}

// Run scrapes once and writes the result.
func (o *scrapeOnceOptions) Run(ctx context.Context, stdout, stderr io.Writer) error {
	logger := o.log.logger()
	p, err := o.pipeline()
	if err != nil {
		return err
	}
	c, nodeFetcher, plainFetcher, nodeOpts := p.clients, p.nodeFetcher, p.plainFetcher, p.nodeTargets

	index := nsindex.NewStatic(o.enrich.mapper(), logger)
	nsList, err := c.metadata.Resource(namespacesGVR).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing namespaces (RBAC: list namespaces): %w", err)
	}
	for _, ns := range nsList.Items {
		index.Set(ns.Name, ns.Labels, ns.Annotations)
	}

	_, podCfg, err := o.pod.listIndex(ctx, &o.kube, c, logger.With("component", "podindex"))
	if err != nil {
		return err
	}

	targets := o.plainTargets()
	if len(o.scrape.Targets) == 0 || len(o.Nodes) > 0 {
		nodeTargets, err := o.nodeTargets(ctx, c, nodeOpts)
		if err != nil {
			return err
		}
		targets = append(targets, nodeTargets...)
	}
	if len(targets) == 0 {
		return errors.New("nothing to scrape: no node matched and no --target was given")
	}

	v := view.NewView()
	mgr := relay.NewManager(relay.ManagerConfig{
		Interval: o.scrape.Interval, Timeout: o.scrape.Timeout, MaxConcurrency: o.scrape.MaxConcurrency,
		HonorTimestamps: o.scrape.HonorTimestamps, NodeFetcher: nodeFetcher, PlainFetcher: plainFetcher,
		Namespaces: index, Pods: podCfg, View: v, Logger: logger, Limits: o.limits.Config(),
	})
	var failed []string
	for i, err := range mgr.ScrapeAll(ctx, targets) {
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s (%s): %v", targets[i].Key, targets[i].Address, err))
		}
	}

	out := stdout
	if o.Output != "" {
		f, err := os.Create(o.Output)
		if err != nil {
			return err
		}
		defer f.Close()
		out = f
	}
	tvs := v.Targets()
	defer v.Release(tvs)
	if err := view.WriteText(out, tvs, nil); err != nil {
		return err
	}
	if len(failed) > 0 {
		sort.Strings(failed)
		for _, f := range failed {
			fmt.Fprintln(stderr, "scrape failed:", f)
		}
		return fmt.Errorf("%d of %d targets failed", len(failed), len(targets))
	}
	return nil
}

func (o *scrapeOnceOptions) nodeTargets(ctx context.Context, c *clients, opts scrape.NodeTargetOptions) ([]*scrape.Target, error) {
	var nodes []corev1.Node
	if len(o.Nodes) > 0 {
		for _, name := range o.Nodes {
			// A list by name, not a get: the relay's ClusterRoles grant list
			// and watch on nodes only (deploy/README.md).
			list, err := c.kube.Nodes().List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + name})
			if err != nil {
				return nil, fmt.Errorf("--node %s (RBAC: list nodes): %w", name, err)
			}
			if len(list.Items) == 0 {
				return nil, fmt.Errorf("--node %s: no such node", name)
			}
			nodes = append(nodes, list.Items[0])
		}
	} else {
		list, err := c.kube.Nodes().List(ctx, metav1.ListOptions{LabelSelector: o.kube.NodeSelector})
		if err != nil {
			return nil, fmt.Errorf("listing nodes (RBAC: list nodes): %w", err)
		}
		nodes = list.Items
	}
	var out []*scrape.Target
	for i := range nodes {
		out = append(out, opts.NodeTargets(&nodes[i])...)
	}
	return out, nil
}
