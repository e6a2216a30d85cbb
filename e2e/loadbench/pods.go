package loadbench

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelet-meta-proxy/kubelet-meta-proxy/e2e/bed"
)

// PodIndexArgs are the relay flags Config.PodIndex adds: two pod labels, workloads, and
// the pod-on-node check (plain, the default with a pod feature on).
var PodIndexArgs = []string{"--pod-labels=app,pod-template-hash", "--workload-labels"}

// podEnrichmentRoleFile is the shipped role of components/pod-enrichment.
const podEnrichmentRoleFile = "deploy/kustomize/components/pod-enrichment/clusterrole.yaml"

// createPods puts every generated pod in the apiserver on its node, as the pod index
// expects: daemonset pods owned by a DaemonSet, the others by a ReplicaSet (created, owned
// by a Deployment that is not: no controller manager runs), and grants the relay the
// pod-enrichment role.
func createPods(ctx context.Context, b *bed.Bed, nodes [][]NodePod, names []string) (int, error) {
	base, err := bed.ModeRules("apiserver")
	if err != nil {
		return 0, err
	}
	pods, err := bed.ShippedClusterRole(podEnrichmentRoleFile)
	if err != nil {
		return 0, err
	}
	rules := append(base[:len(base):len(base)], pods.Rules...)
	if err := b.SetRelayRules(ctx, rules); err != nil {
		return 0, err
	}
	jobs, rss, namespaces := podObjects(nodes, names)
	for _, ns := range namespaces {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
		if _, err := b.Client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return 0, err
		}
	}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	do := func(f func() error) {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(); err != nil && !apierrors.IsAlreadyExists(err) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	for _, rs := range rss {
		do(func() error {
			_, err := b.Client.AppsV1().ReplicaSets(rs.Namespace).Create(ctx, rs, metav1.CreateOptions{})
			return err
		})
	}
	for _, p := range jobs {
		do(func() error {
			_, err := b.Client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
			return err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("creating pods: %w", err)
	}
	return len(jobs), nil
}

// podObjects returns the objects createPods creates for the generated pods (nodes[i] runs on
// the node names[i]): the pods, their ReplicaSets, and the namespaces, in order of first use.
func podObjects(nodes [][]NodePod, names []string) ([]*corev1.Pod, []*appsv1.ReplicaSet, []string) {
	seenNS := map[string]bool{}
	var namespaces []string
	type rsKey struct{ ns, name string }
	seenRS := map[rsKey]bool{}
	var rss []*appsv1.ReplicaSet
	ctl := true
	var pods []*corev1.Pod
	for i, n := range nodes {
		for _, p := range n {
			if !seenNS[p.Namespace] {
				seenNS[p.Namespace] = true
				namespaces = append(namespaces, p.Namespace)
			}
			// Names are NAME-HASH-SUFFIX (apps) or DAEMONSET-SUFFIX.
			parts := strings.Split(p.Name, "-")
			var owner metav1.OwnerReference
			labels := map[string]string{"app": parts[0]}
			if p.Namespace == "kube-system" {
				owner = metav1.OwnerReference{APIVersion: "apps/v1", Kind: "DaemonSet", Name: strings.Join(parts[:len(parts)-1], "-"), UID: types.UID("00000000-0000-4000-8000-000000000001"), Controller: &ctl}
			} else {
				rs := strings.Join(parts[:len(parts)-1], "-")
				labels["pod-template-hash"] = parts[len(parts)-2]
				owner = metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs, UID: types.UID("00000000-0000-4000-8000-000000000002"), Controller: &ctl}
				if k := (rsKey{p.Namespace, rs}); !seenRS[k] {
					seenRS[k] = true
					tpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"rs": rs}},
						Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/none"}}}}
					rss = append(rss, &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: rs, Namespace: p.Namespace, OwnerReferences: []metav1.OwnerReference{{
						APIVersion: "apps/v1", Kind: "Deployment", Name: strings.SplitN(rs, "-", 2)[0], UID: types.UID("00000000-0000-4000-8000-000000000003"), Controller: &ctl}}},
						Spec: appsv1.ReplicaSetSpec{Replicas: new(int32), Selector: &metav1.LabelSelector{MatchLabels: tpl.Labels}, Template: tpl}})
				}
			}
			pods = append(pods, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: labels, OwnerReferences: []metav1.OwnerReference{owner}},
				Spec: corev1.PodSpec{NodeName: names[i], AutomountServiceAccountToken: new(false),
					Containers: []corev1.Container{{Name: "c", Image: "example.invalid/none"}}},
			})
		}
	}
	return pods, rss, namespaces
}
