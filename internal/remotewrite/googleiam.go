package remotewrite

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/prometheus/prometheus/storage/remote/googleiam"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

// googleMonitoringWriteScope is the OAuth scope Prometheus's google_iam asks
// for: writing to Google Cloud Managed Service for Prometheus.
const googleMonitoringWriteScope = "https://www.googleapis.com/auth/monitoring.write"

// newGoogleIAMRoundTripper authorizes requests as Prometheus's google_iam
// does: with the service account key in CredentialsFile, else Google's
// application default credentials, both for the monitoring.write scope.
// Prometheus's googleiam.NewRoundTripper builds the same OAuth transport
// through google.golang.org/api/transport/http, which links gRPC and Google's
// mutual-TLS (S2A) handshaker the relay never uses: about 2 MB of binary,
// nearly all of it resident (issue 17). golang.org/x/oauth2/google is the
// library under both.
func newGoogleIAMRoundTripper(cfg *googleiam.Config, next http.RoundTripper) (http.RoundTripper, error) {
	ctx := context.Background()
	var (
		creds *google.Credentials
		err   error
	)
	if cfg.CredentialsFile != "" {
		data, rerr := os.ReadFile(cfg.CredentialsFile)
		if rerr != nil {
			return nil, fmt.Errorf("google_iam: %w", rerr)
		}
		creds, err = google.CredentialsFromJSONWithType(ctx, data, google.ServiceAccount, googleMonitoringWriteScope)
		if err != nil {
			return nil, fmt.Errorf("google_iam: credentials_file %s: %w", cfg.CredentialsFile, err)
		}
	} else if creds, err = google.FindDefaultCredentials(ctx, googleMonitoringWriteScope); err != nil {
		return nil, fmt.Errorf("google_iam: error finding default Google credentials: %w", err)
	}
	if next == nil {
		next = http.DefaultTransport
	}
	return &oauth2.Transport{Source: creds.TokenSource, Base: next}, nil
}
