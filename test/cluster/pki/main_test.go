package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("%s: no CERTIFICATE block", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Every certificate chains to the CA with the usage and names its component
// checks, and each key matches its certificate.
func TestWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	err := run([]string{"-dir", dir, "-node", "node-a", "-node-ip", "192.0.2.7", "-apiserver", "https://127.0.0.1:16443"})
	if err != nil {
		t.Fatal(err)
	}
	ca := readCert(t, filepath.Join(dir, "ca.crt"))
	if !ca.IsCA {
		t.Fatal("ca.crt is not a CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	cases := []struct {
		name  string
		usage x509.ExtKeyUsage
		host  string // a name the serving certificate must be valid for
		cn    string
		org   string
	}{
		{"etcd-server", x509.ExtKeyUsageServerAuth, "127.0.0.1", "etcd", ""},
		{"apiserver", x509.ExtKeyUsageServerAuth, "127.0.0.1", "kube-apiserver", ""},
		{"apiserver", x509.ExtKeyUsageServerAuth, "10.0.0.1", "kube-apiserver", ""},
		{"apiserver", x509.ExtKeyUsageServerAuth, "kubernetes.default.svc", "kube-apiserver", ""},
		{"kubelet-server", x509.ExtKeyUsageServerAuth, "192.0.2.7", "node-a", ""},
		{"kubelet-server", x509.ExtKeyUsageServerAuth, "node-a", "node-a", ""},
		{"apiserver-etcd-client", x509.ExtKeyUsageClientAuth, "", "kube-apiserver-etcd-client", ""},
		{"apiserver-kubelet-client", x509.ExtKeyUsageClientAuth, "", "kube-apiserver-kubelet-client", "system:masters"},
		{"admin", x509.ExtKeyUsageClientAuth, "", "crid-cluster-admin", "system:masters"},
		{"controller-manager", x509.ExtKeyUsageClientAuth, "", "system:kube-controller-manager", ""},
		{"scheduler", x509.ExtKeyUsageClientAuth, "", "system:kube-scheduler", ""},
		{"kubelet-client", x509.ExtKeyUsageClientAuth, "", "system:node:node-a", "system:nodes"},
	}
	for _, c := range cases {
		cert := readCert(t, filepath.Join(dir, c.name+".crt"))
		_, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: c.host, KeyUsages: []x509.ExtKeyUsage{c.usage}})
		if err != nil {
			t.Errorf("%s for %q: %v", c.name, c.host, err)
		}
		if cert.Subject.CommonName != c.cn {
			t.Errorf("%s: CN %q, want %q", c.name, cert.Subject.CommonName, c.cn)
		}
		if c.org != "" && !slices.Contains(cert.Subject.Organization, c.org) {
			t.Errorf("%s: organizations %v lack %q", c.name, cert.Subject.Organization, c.org)
		}
		if _, err := tls.LoadX509KeyPair(filepath.Join(dir, c.name+".crt"), filepath.Join(dir, c.name+".key")); err != nil {
			t.Errorf("%s: key does not match: %v", c.name, err)
		}
	}
	// A client certificate is not a serving one.
	admin := readCert(t, filepath.Join(dir, "admin.crt"))
	if _, err := admin.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("admin.crt verifies for server auth")
	}
	for file, cert := range kubeconfigs {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"server: https://127.0.0.1:16443", filepath.Join(dir, cert+".crt"), filepath.Join(dir, "ca.crt")} {
			if !strings.Contains(string(b), want) {
				t.Errorf("%s lacks %q", file, want)
			}
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "sa.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("sa.key: %v, mode %v", err, fi.Mode())
	}
	if _, err := os.Stat(filepath.Join(dir, "sa.pub")); err != nil {
		t.Error(err)
	}
}

func TestBadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"-dir", dir},
		{"-dir", dir, "-node", "n", "-node-ip", "not-an-ip", "-apiserver", "https://x"},
		{"-dir", dir, "-node", "n", "-node-ip", "192.0.2.1", "-apiserver", "https://x", "-service-ip", "x"},
	} {
		if err := run(args); err == nil {
			t.Errorf("run(%v) accepted", args)
		}
	}
}
