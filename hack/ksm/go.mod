module github.com/kubelet-meta-proxy/kubelet-meta-proxy/hack/ksm

go 1.25.0

require k8s.io/kube-state-metrics/v2 v2.19.1
