package remotewrite

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/golang/snappy"
	"github.com/prometheus/prometheus/storage/remote/googleiam"
)

// fakeGoogleTokenServer is an OAuth token endpoint for service-account JWT
// grants: it checks the assertion's scope and audience and hands out token.
func fakeGoogleTokenServer(t *testing.T, token string, grants *atomic.Int32) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if g := r.Form.Get("grant_type"); g != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
			http.Error(w, "grant_type "+g, http.StatusBadRequest)
			return
		}
		parts := strings.Split(r.Form.Get("assertion"), ".")
		if len(parts) != 3 {
			http.Error(w, "assertion is no JWT", http.StatusBadRequest)
			return
		}
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		var claims struct {
			Scope string `json:"scope"`
			Aud   string `json:"aud"`
			Iss   string `json:"iss"`
		}
		if err == nil {
			err = json.Unmarshal(payload, &claims)
		}
		if err != nil || claims.Scope != googleMonitoringWriteScope || claims.Aud != srv.URL+"/token" || claims.Iss != "relay@project.iam.gserviceaccount.com" {
			http.Error(w, "bad claims "+string(payload), http.StatusUnauthorized)
			return
		}
		grants.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"access_token":"` + token + `","token_type":"Bearer","expires_in":3600}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func writeServiceAccountKey(t *testing.T, dir, typ, tokenURI string) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	b, err := json.Marshal(map[string]string{
		"type":           typ,
		"project_id":     "project",
		"private_key_id": "k1",
		"private_key":    string(pemKey),
		"client_email":   "relay@project.iam.gserviceaccount.com",
		"client_id":      "1",
		"token_uri":      tokenURI,
	})
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, dir, typ+".json", string(b))
}

// TestGoogleIAM: an endpoint with google_iam and a service account key
// gets a token for the monitoring.write scope from the key's token_uri and
// sends it as a bearer token, fetching it once for many requests; a key
// file of another type, or none, is refused when the client is built, with
// the file named.
func TestGoogleIAM(t *testing.T) {
	var grants atomic.Int32
	tokens := fakeGoogleTokenServer(t, "ya29.test-token", &grants)
	dir := t.TempDir()
	rcv := newReceiver(t, nil)

	e := testEndpoint(rcv.url())
	e.Prom = &PromSettings{GoogleIAM: &googleiam.Config{CredentialsFile: writeServiceAccountKey(t, dir, "service_account", tokens.URL+"/token")}}
	c, err := newClient(e)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.send(context.Background(), snappy.Encode(nil, nil)); err != nil {
			t.Fatal(err)
		}
		rcv.mu.Lock()
		got := rcv.headers.Get("Authorization")
		rcv.mu.Unlock()
		if got != "Bearer ya29.test-token" {
			t.Fatalf("Authorization %q, want the token from the service account's token_uri", got)
		}
	}
	if n := grants.Load(); n != 1 {
		t.Errorf("%d token grants for 3 requests, want 1 (the token is reused until it expires)", n)
	}

	for _, tc := range []struct {
		name, file, want string
	}{
		{"authorized_user key", writeServiceAccountKey(t, dir, "authorized_user", tokens.URL+"/token"), "authorized_user.json"},
		{"missing file", filepath.Join(dir, "absent.json"), "absent.json"},
		{"not JSON", writeFile(t, dir, "garbage.json", "not json"), "garbage.json"},
	} {
		e := testEndpoint(rcv.url())
		e.Prom = &PromSettings{GoogleIAM: &googleiam.Config{CredentialsFile: tc.file}}
		_, err := newClient(e)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "google_iam") {
			t.Errorf("%s: error %v, want one naming google_iam and %s", tc.name, err, tc.want)
		}
	}
}
