{{- define "kmp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kmp.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kmp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kmp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kmp.labels" -}}
{{ include "kmp.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubelet-meta-proxy
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "kmp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kmp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create=false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the remote-write URL (and credentials), or "" when remote write is off. */}}
{{- define "kmp.remoteWriteSecret" -}}
{{- if .Values.remoteWrite.existingSecret }}
{{- .Values.remoteWrite.existingSecret }}
{{- else if .Values.remoteWrite.url }}
{{- printf "%s-remote-write" (include "kmp.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The container's resources: .Values.resources when set, else sized per mode from the measurements in README.md
(see values.yaml).
*/}}
{{- define "kmp.resources" -}}
{{- if .Values.resources }}
{{- toYaml .Values.resources }}
{{- else if eq .Values.mode "kubelet" }}
requests:
  cpu: 20m
  memory: 48Mi
limits:
  cpu: 500m
  memory: 256Mi
{{- else }}
requests:
  cpu: 100m
  memory: 256Mi
limits:
  cpu: "1"
  memory: 1Gi
{{- end }}
{{- end }}

{{/* Fails on values that do not make a working relay together. */}}
{{- define "kmp.validate" -}}
{{- if and .Values.sharding.enabled (ne .Values.mode "apiserver") }}
{{- fail "sharding.enabled needs mode=apiserver (in mode=kubelet every pod scrapes only its own node already)" }}
{{- end }}
{{- if and .Values.sharding.enabled (lt (int .Values.replicas) 1) }}
{{- fail "sharding.enabled needs replicas >= 1 (replicas is the shard count)" }}
{{- end }}
{{- if and .Values.configFile (hasKey .Values.configFile "remote_write") (or .Values.remoteWrite.url .Values.remoteWrite.existingSecret) }}
{{- fail "configFile.remote_write and remoteWrite.url/existingSecret both configure remote write: keep one" }}
{{- end }}
{{- end }}

{{/* The relay's pod spec, shared by the Deployment (mode=apiserver), the StatefulSet (mode=apiserver with
sharding.enabled) and the DaemonSet (mode=kubelet). */}}
{{- define "kmp.podTemplate" -}}
{{- $rwSecret := include "kmp.remoteWriteSecret" . -}}
{{- $auth := .Values.remoteWrite.auth.type -}}
{{- $dq := and $rwSecret .Values.remoteWrite.diskQueue.enabled -}}
metadata:
  labels:
    {{- include "kmp.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/component: relay
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    kubectl.kubernetes.io/default-container: kubelet-meta-proxy
    {{- if and $rwSecret (not .Values.remoteWrite.existingSecret) }}
    checksum/remote-write: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
    {{- if .Values.configFile }}
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "kmp.serviceAccountName" . }}
  # The relay authenticates to the kube-apiserver (and the kubelets) with its service-account token.
  automountServiceAccountToken: true
  enableServiceLinks: false
  terminationGracePeriodSeconds: 30
  {{- if and (eq .Values.mode "kubelet") .Values.hostNetwork }}
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: kubelet-meta-proxy
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - run
        - --mode={{ .Values.mode }}
        {{- if eq .Values.mode "kubelet" }}
        - --node-name-or-ip=$(NODE_NAME)
        {{- if .Values.kubeletTLS.insecureSkipVerify }}
        - --kubelet-insecure-skip-verify
        {{- else }}
        - --kubelet-ca-file={{ .Values.kubeletTLS.caFile }}
        {{- end }}
        {{- end }}
        {{- if .Values.sharding.enabled }}
        # Each StatefulSet pod takes the shard of its ordinal (the suffix of POD_NAME).
        - --shard-count={{ .Values.replicas }}
        {{- end }}
        {{- with .Values.namespaceLabels }}
        - --namespace-labels={{ join "," . }}
        {{- end }}
        {{- with .Values.namespaceAnnotations }}
        - --namespace-annotations={{ join "," . }}
        {{- end }}
        {{- with .Values.labelPrefix }}
        - --label-prefix={{ . }}
        {{- end }}
        {{- if .Values.podEnrichment.enabled }}
        {{- with .Values.podEnrichment.podLabels }}
        - --pod-labels={{ join "," . }}
        {{- end }}
        {{- if .Values.podEnrichment.workloadLabels }}
        - --workload-labels
        {{- end }}
        - --pod-node-check={{ .Values.podEnrichment.nodeCheck }}
        - --label-precedence={{ .Values.podEnrichment.labelPrecedence }}
        {{- end }}
        - --metrics-port={{ .Values.metricsPort }}
        {{- if .Values.secureMetrics.enabled }}
        - --metrics-secure
        {{- end }}
        - --scrape-interval={{ .Values.scrapeInterval }}
        - --scrape-timeout={{ .Values.scrapeTimeout }}
        {{- with .Values.limits }}
        - --sample-limit={{ int .sampleLimit }}
        - --label-limit={{ int .labelLimit }}
        - --label-name-length-limit={{ int .labelNameLengthLimit }}
        - --label-value-length-limit={{ int .labelValueLengthLimit }}
        {{- end }}
        - --log-level={{ .Values.logLevel }}
        - --log-format={{ .Values.logFormat }}
        {{- if .Values.configFile }}
        - --config.file=/etc/kubelet-meta-proxy/config/relay.yml
        {{- end }}
        {{- if $rwSecret }}
        - --remote-write-url=$(REMOTE_WRITE_URL)
        - --remote-write-timeout={{ .Values.remoteWrite.timeout }}
        {{- if eq $auth "bearerToken" }}
        - --remote-write-bearer-token-file=/etc/kubelet-meta-proxy/remote-write/bearer-token
        {{- else if eq $auth "basicAuth" }}
        - --remote-write-basic-auth-username=$(REMOTE_WRITE_USERNAME)
        - --remote-write-basic-auth-password-file=/etc/kubelet-meta-proxy/remote-write/password
        {{- end }}
        {{- range $k, $v := .Values.remoteWrite.headers }}
        - --remote-write-header={{ $k }}={{ $v }}
        {{- end }}
        {{- range $k, $v := .Values.remoteWrite.externalLabels }}
        - --external-label={{ $k }}={{ $v }}
        {{- end }}
        {{- if $dq }}
        - --remote-write-queue-dir=/var/lib/kubelet-meta-proxy/queue
        - --remote-write-queue-max-bytes={{ int64 .Values.remoteWrite.diskQueue.maxBytes }}
        {{- end }}
        {{- end }}
        {{- range .Values.extraArgs }}
        - {{ . }}
        {{- end }}
      env:
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- if $rwSecret }}
        - name: REMOTE_WRITE_URL
          valueFrom:
            secretKeyRef:
              name: {{ $rwSecret }}
              key: url
        {{- if eq $auth "basicAuth" }}
        - name: REMOTE_WRITE_USERNAME
          valueFrom:
            secretKeyRef:
              name: {{ $rwSecret }}
              key: username
        {{- end }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: metrics
          containerPort: {{ .Values.metricsPort }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
          {{- if .Values.secureMetrics.enabled }}
          scheme: HTTPS
          {{- end }}
        initialDelaySeconds: 5
        periodSeconds: 20
        timeoutSeconds: 5
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /readyz
          port: metrics
          {{- if .Values.secureMetrics.enabled }}
          scheme: HTTPS
          {{- end }}
        initialDelaySeconds: 2
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 3
      resources:
        {{- include "kmp.resources" . | nindent 8 }}
      {{- with .Values.securityContext }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if or (and $rwSecret (ne $auth "none")) $dq .Values.extraVolumeMounts .Values.configFile }}
      volumeMounts:
        {{- if .Values.configFile }}
        - name: config
          mountPath: /etc/kubelet-meta-proxy/config
          readOnly: true
        {{- end }}
        {{- if $dq }}
        - name: queue
          mountPath: /var/lib/kubelet-meta-proxy/queue
        {{- end }}
        {{- if and $rwSecret (ne $auth "none") }}
        - name: remote-write
          mountPath: /etc/kubelet-meta-proxy/remote-write
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
  {{- if or (and $rwSecret (ne $auth "none")) (and $dq (not .Values.sharding.enabled)) .Values.extraVolumes .Values.configFile }}
  volumes:
    {{- if .Values.configFile }}
    - name: config
      configMap:
        name: {{ include "kmp.fullname" . }}-config
    {{- end }}
    {{- if and $dq (not .Values.sharding.enabled) }}
    # Survives container restarts; sharding.enabled uses a PVC per pod instead.
    - name: queue
      emptyDir:
        sizeLimit: {{ .Values.remoteWrite.diskQueue.sizeLimit }}
    {{- end }}
    {{- if and $rwSecret (ne $auth "none") }}
    - name: remote-write
      secret:
        secretName: {{ $rwSecret }}
        defaultMode: 0440
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if .Values.tolerations }}
  tolerations:
    {{- toYaml .Values.tolerations | nindent 4 }}
  {{- else if eq .Values.mode "kubelet" }}
  tolerations:
    - operator: Exists
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
