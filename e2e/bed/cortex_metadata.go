package bed

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
)

// MetricMetadata is one entry of the Prometheus metadata API.
type MetricMetadata struct {
	Type string `json:"type"`
	Help string `json:"help"`
	Unit string `json:"unit"`
}

// Metadata returns what Cortex holds as tenant's metric metadata
// (GET /prometheus/api/v1/metadata, answered from the ingesters' memory): family -> entries.
func (c *Cortex) Metadata(ctx context.Context, tenant string) (map[string][]MetricMetadata, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.QueryURL+"/api/v1/metadata", nil)
	if err != nil {
		return nil, err
	}
	req.Header = tenantHeader(tenant)
	code, body, err := doRead(httpClient, req)
	if err != nil {
		return nil, err
	}
	var r struct {
		Status string                      `json:"status"`
		Data   map[string][]MetricMetadata `json:"data"`
		Error  string                      `json:"error"`
	}
	if err := json.Unmarshal(body, &r); err != nil || code != http.StatusOK || r.Status != "success" {
		return nil, fmt.Errorf("cortex metadata of tenant %s: %d: %.300s", tenant, code, body)
	}
	return r.Data, nil
}
