// Command pki writes the certificates, keys and kubeconfigs of the
// single-node cluster that make cluster-test runs (test/cluster/run.sh):
// one CA signs the serving certificates of etcd, kube-apiserver and kubelet
// and the client certificates of every component; the service-account key
// pair signs pod tokens. Everything is ECDSA P-256 (fast to generate, and
// accepted by every component), valid for a day: the files live in the
// run's temp dir and are removed with it.
//
//	pki -dir DIR -node NAME -node-ip IP -apiserver https://127.0.0.1:PORT
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "pki:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("pki", flag.ContinueOnError)
	dir := fs.String("dir", "", "directory to write into (created)")
	node := fs.String("node", "", "the node's name (kubelet's client and serving certificates)")
	nodeIP := fs.String("node-ip", "", "the node's address, in kubelet's serving certificate")
	apiserver := fs.String("apiserver", "", "the API server's URL, for the kubeconfigs")
	serviceIP := fs.String("service-ip", "10.0.0.1", "the kubernetes service's cluster IP, in the API server's certificate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || *node == "" || *nodeIP == "" || *apiserver == "" {
		return errors.New("-dir, -node, -node-ip and -apiserver are required")
	}
	p := Plan{Node: *node, NodeIP: net.ParseIP(*nodeIP), ServiceIP: net.ParseIP(*serviceIP), APIServer: *apiserver}
	if p.NodeIP == nil {
		return fmt.Errorf("-node-ip %q is not an IP address", *nodeIP)
	}
	if p.ServiceIP == nil {
		return fmt.Errorf("-service-ip %q is not an IP address", *serviceIP)
	}
	return p.Write(*dir)
}

// Plan names what differs between clusters.
type Plan struct {
	Node      string
	NodeIP    net.IP
	ServiceIP net.IP
	APIServer string
}

// leaf is one certificate signed by the CA.
type leaf struct {
	name   string // file base name: NAME.crt, NAME.key
	cn     string
	orgs   []string
	server bool // serving (ServerAuth) rather than client (ClientAuth)
	dns    []string
	ips    []net.IP
}

func (p Plan) leaves() []leaf {
	loop := net.IPv4(127, 0, 0, 1)
	return []leaf{
		{name: "etcd-server", cn: "etcd", server: true, dns: []string{"localhost"}, ips: []net.IP{loop}},
		{name: "apiserver-etcd-client", cn: "kube-apiserver-etcd-client"},
		{name: "apiserver", cn: "kube-apiserver", server: true,
			dns: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
			ips: []net.IP{loop, p.ServiceIP}},
		{name: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}},
		{name: "admin", cn: "crid-cluster-admin", orgs: []string{"system:masters"}},
		{name: "controller-manager", cn: "system:kube-controller-manager"},
		{name: "scheduler", cn: "system:kube-scheduler"},
		{name: "kubelet-client", cn: "system:node:" + p.Node, orgs: []string{"system:nodes"}},
		{name: "kubelet-server", cn: p.Node, server: true, dns: []string{p.Node, "localhost"}, ips: []net.IP{p.NodeIP, loop}},
	}
}

// kubeconfigs maps each kubeconfig file to the client certificate it uses.
var kubeconfigs = map[string]string{
	"admin.kubeconfig":              "admin",
	"controller-manager.kubeconfig": "controller-manager",
	"scheduler.kubeconfig":          "scheduler",
	"kubelet.kubeconfig":            "kubelet-client",
}

// Write creates dir and writes ca.crt/key, each leaf's NAME.crt/key,
// sa.key/sa.pub and the kubeconfigs.
func (p Plan) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate the CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "crid-cluster-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("sign the CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("parse the CA: %w", err)
	}
	if err := writePair(dir, "ca", caDER, caKey); err != nil {
		return err
	}
	for _, l := range p.leaves() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return fmt.Errorf("generate %s's key: %w", l.name, err)
		}
		tmpl := &x509.Certificate{
			SerialNumber:          serial(),
			Subject:               pkix.Name{CommonName: l.cn, Organization: l.orgs},
			NotBefore:             now.Add(-time.Hour),
			NotAfter:              now.Add(24 * time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			BasicConstraintsValid: true,
			DNSNames:              l.dns,
			IPAddresses:           l.ips,
		}
		if l.server {
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return fmt.Errorf("sign %s: %w", l.name, err)
		}
		if err := writePair(dir, l.name, der, key); err != nil {
			return err
		}
	}
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate the service-account key: %w", err)
	}
	if err := writeKey(filepath.Join(dir, "sa.key"), saKey); err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return fmt.Errorf("encode the service-account public key: %w", err)
	}
	if err := writePEM(filepath.Join(dir, "sa.pub"), "PUBLIC KEY", pub, 0o644); err != nil {
		return err
	}
	for file, cert := range kubeconfigs {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(kubeconfig(dir, p.APIServer, cert)), 0o600); err != nil {
			return fmt.Errorf("write %s: %w", file, err)
		}
	}
	return nil
}

// kubeconfig is a kubeconfig for the client certificate NAME.crt of dir.
func kubeconfig(dir, server, name string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: crid-cluster
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: crid-cluster
  context:
    cluster: crid-cluster
    user: %s
current-context: crid-cluster
`, server, filepath.Join(dir, "ca.crt"), name, filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), name)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand does not fail on Linux (it blocks instead).
		return big.NewInt(time.Now().UnixNano())
	}
	return n
}

func writePair(dir, name string, der []byte, key *ecdsa.PrivateKey) error {
	if err := writePEM(filepath.Join(dir, name+".crt"), "CERTIFICATE", der, 0o644); err != nil {
		return err
	}
	return writeKey(filepath.Join(dir, name+".key"), key)
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return writePEM(path, "EC PRIVATE KEY", der, 0o600)
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), mode); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
