package bed

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
)

// IssueKubeletCert returns a serving certificate for kubelets of your own (KubeOnly) at ips,
// signed by the bed's CA: the kube-apiserver verifies kubelets against it
// (--kubelet-certificate-authority), and its kubelet client certificate (CN KubeletClientUser)
// verifies against ClientCAs.
func (b *Bed) IssueKubeletCert(name string, ips []net.IP) (cert tls.Certificate, clientCAs *x509.CertPool, err error) {
	crt, key, err := b.ca.issue("kubelet-"+name, name, nil, ips, nil, true, false)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	if cert, err = tls.LoadX509KeyPair(crt, key); err != nil {
		return tls.Certificate{}, nil, err
	}
	clientCAs = x509.NewCertPool()
	if !clientCAs.AppendCertsFromPEM(b.ca.certPEM) {
		return tls.Certificate{}, nil, errors.New("bed: CA certificate does not parse")
	}
	return cert, clientCAs, nil
}

// APIServerPID is the kube-apiserver's process id (0 if it is not running), e.g. to read
// /proc/PID/stat.
func (b *Bed) APIServerPID() int { return b.apiserver.pid() }
