module github.com/kubelet-meta-proxy/kubelet-meta-proxy/hack/cortex

go 1.25.0

require github.com/cortexproject/cortex v1.21.1

// The replace and exclude lines of Cortex v1.21.1's own go.mod: a dependency's replaces do
// not apply to the module that requires it, so `go install ...@v1.21.1` refuses Cortex and
// this wrapper repeats them.
replace github.com/weaveworks/common => github.com/cortexproject/weaveworks-common v0.0.0-20250902164925-0315015a8b9f

replace git.apache.org/thrift.git => github.com/apache/thrift v0.0.0-20180902110319-2566ecd5d999

replace github.com/gocql/gocql => github.com/grafana/gocql v0.0.0-20200605141915-ba5dc39ece85

replace github.com/hashicorp/memberlist => github.com/grafana/memberlist v0.3.1-0.20220714140823-09ffed8adbbe

replace github.com/vimeo/galaxycache => github.com/thanos-community/galaxycache v0.0.0-20211122094458-3a32041a1f1e

replace github.com/go-openapi/spec => github.com/go-openapi/spec v0.20.6

replace github.com/ionos-cloud/sdk-go/v6 => github.com/ionos-cloud/sdk-go/v6 v6.0.4

replace github.com/google/gnostic => github.com/googleapis/gnostic v0.6.9

replace gopkg.in/alecthomas/kingpin.v2 => github.com/alecthomas/kingpin v1.3.8-0.20210301060133-17f40c25f497

replace google.golang.org/grpc => google.golang.org/grpc v1.71.2

exclude github.com/envoyproxy/go-control-plane/envoy v1.32.3

replace github.com/prometheus/otlptranslator => github.com/prometheus/otlptranslator v1.0.0
