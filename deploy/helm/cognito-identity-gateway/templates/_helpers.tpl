{{/*
Names, labels, and the facts more than one template needs: the image, the
flags, the grace period's arithmetic, and the checks that refuse values the
gateway would refuse at start.
*/}}

{{- define "cig.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's name, with the chart's unless it holds it already. */}}
{{- define "cig.fullname" -}}
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

{{- define "cig.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "cig.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cig.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "cig.labels" -}}
helm.sh/chart: {{ include "cig.chart" . }}
{{ include "cig.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: gateway
app.kubernetes.io/part-of: cognito-identity-gateway
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "cig.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cig.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Only the dev image has the emulator: an empty tag follows gateway.emulator. */}}
{{- define "cig.image" -}}
{{- $tag := .Values.image.tag | default (printf "%s%s" .Chart.AppVersion (ternary "-dev" "" .Values.gateway.emulator)) }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "cig.tlsSecretName" -}}
{{- if .Values.tls.secretName }}
{{- .Values.tls.secretName }}
{{- else }}
{{- printf "%s-tls" (include "cig.fullname" .) }}
{{- end }}
{{- end }}

{{- define "cig.policyConfigMapName" -}}
{{- if .Values.policy.existingConfigMap }}
{{- .Values.policy.existingConfigMap }}
{{- else }}
{{- printf "%s-policy" (include "cig.fullname" .) }}
{{- end }}
{{- end }}

{{/*
The seconds a replica may need between the kubelet's decision to stop it
and its exit: the preStop pause, the drain (--shutdown-grace), then what
the gateway does after the drain before it exits: the audit writer's last
lines (5 s at most: src/lib.rs, `writer.finish`) and the traces' last
export (bounded by OTEL_BSP_EXPORT_TIMEOUT).
*/}}
{{- define "cig.shutdownSeconds" -}}
{{- $s := add .Values.shutdown.preStopSleepSeconds .Values.shutdown.drainSeconds }}
{{- if .Values.audit.enabled }}
{{- $s = add $s 5 }}
{{- end }}
{{- if .Values.traces.endpoint }}
{{- $s = add $s .Values.traces.exportTimeoutSeconds }}
{{- end }}
{{- $s }}
{{- end }}

{{/*
terminationGracePeriodSeconds: computed with 5 s to spare (the signal's
way to PID 1, the last log lines), or the value given, which must be longer
than the shutdown: a SIGKILL before the end loses calls in flight and the
audit lines still queued.
*/}}
{{- define "cig.terminationGracePeriodSeconds" -}}
{{- $needed := include "cig.shutdownSeconds" . | int }}
{{- $given := .Values.terminationGracePeriodSeconds | int }}
{{- if eq $given 0 }}
{{- add $needed 5 }}
{{- else if le $given $needed }}
{{- fail (printf "terminationGracePeriodSeconds %d is too short: the pod needs more than %d s to stop (preStop pause %d s + drain %d s%s%s); raise it, or set 0 to have it computed" $given $needed (.Values.shutdown.preStopSleepSeconds | int) (.Values.shutdown.drainSeconds | int) (ternary " + audit flush 5 s" "" .Values.audit.enabled) (ternary (printf " + last trace export %d s" (.Values.traces.exportTimeoutSeconds | int)) "" (ne .Values.traces.endpoint ""))) }}
{{- else }}
{{- $given }}
{{- end }}
{{- end }}

{{/* Refuses, at render time, what the gateway would refuse at start. */}}
{{- define "cig.validate" -}}
{{- if and (not .Values.policy.enabled) (not .Values.gateway.allowAllCallers) (not .Values.gateway.emulator) }}
{{- fail "policy.enabled is off: turn gateway.allowAllCallers on to serve every caller (the gateway refuses to start on a non-loopback address without a policy), or give a policy" }}
{{- end }}
{{- if and .Values.policy.enabled .Values.gateway.allowAllCallers }}
{{- fail "policy.enabled and gateway.allowAllCallers: choose one (with a policy, the policy decides)" }}
{{- end }}
{{- if and .Values.policy.enabled (not .Values.policy.existingConfigMap) (not .Values.policy.content) }}
{{- fail "policy.content is empty: give the policy's text, or policy.existingConfigMap" }}
{{- end }}
{{- if and .Values.callerIdentity.header (ne .Values.tls.mode "none") }}
{{- fail "callerIdentity.header is for plaintext listeners behind a mesh; with tls.mode other than none, callers are named by their certificates" }}
{{- end }}
{{- if and .Values.callerIdentity.trustPodIPs (not .Values.callerIdentity.header) }}
{{- fail "callerIdentity.trustPodIPs needs callerIdentity.header" }}
{{- end }}
{{- if and (eq .Values.tls.mode "secret") (not .Values.tls.secretName) }}
{{- fail "tls.mode secret needs tls.secretName, a kubernetes.io/tls Secret (with ca.crt for tls.clientAuth)" }}
{{- end }}
{{- if and (eq .Values.tls.mode "certManager") (not .Values.tls.certManager.issuerRef.name) }}
{{- fail "tls.mode certManager needs tls.certManager.issuerRef.name" }}
{{- end }}
{{- if and (eq .Values.tls.mode "files") (or (not .Values.tls.files.cert) (not .Values.tls.files.key)) }}
{{- fail "tls.mode files needs tls.files.cert and tls.files.key, in volumes of extraVolumes" }}
{{- end }}
{{- if and .Values.audit.enabled (not .Values.audit.hmacKeySecret.name) }}
{{- fail "audit.enabled needs audit.hmacKeySecret.name: a Secret with the key of the user hash, the same for every replica (kubectl create secret generic NAME --from-literal=key=$(openssl rand -hex 32))" }}
{{- end }}
{{- if eq (int .Values.ports.grpc) (int .Values.ports.admin) }}
{{- fail "ports.grpc and ports.admin must differ" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas is above autoscaling.maxReplicas" }}
{{- end }}
{{- if and .Values.traces.endpoint (not (hasPrefix "http://" .Values.traces.endpoint)) }}
{{- fail "traces.endpoint: the gateway exports to plain http:// collectors only" }}
{{- end }}
{{- end }}

{{/* The client CA's path, or nothing: no client certificates asked for. */}}
{{- define "cig.clientCaPath" -}}
{{- if eq .Values.tls.mode "files" }}
{{- .Values.tls.files.clientCa }}
{{- else if and (ne .Values.tls.mode "none") .Values.tls.clientAuth }}
{{- if .Values.tls.clientCa.existingConfigMap }}
{{- printf "%s/%s" .Values.tls.clientCa.mountPath .Values.tls.clientCa.key }}
{{- else }}
{{- printf "%s/ca.crt" .Values.tls.mountPath }}
{{- end }}
{{- end }}
{{- end }}

{{/* The gateway's flags, each as one argument. */}}
{{- define "cig.args" -}}
- "--listen={{ .Values.gateway.listenHost }}:{{ .Values.ports.grpc }}"
- "--admin-listen={{ .Values.gateway.listenHost }}:{{ .Values.ports.admin }}"
- "--shutdown-grace={{ .Values.shutdown.drainSeconds }}s"
- "--log-format={{ .Values.gateway.logFormat }}"
{{- with .Values.gateway.region }}
- "--region={{ . }}"
{{- end }}
{{- with .Values.gateway.endpointUrl }}
- "--endpoint-url={{ . }}"
{{- end }}
{{- if .Values.gateway.emulator }}
- "--emulator"
{{- end }}
{{- if .Values.policy.enabled }}
- "--policy={{ .Values.policy.mountPath }}/{{ .Values.policy.fileName }}"
{{- else if .Values.gateway.allowAllCallers }}
- "--allow-all-callers"
{{- end }}
{{- if eq .Values.tls.mode "files" }}
- "--tls-cert={{ .Values.tls.files.cert }}"
- "--tls-key={{ .Values.tls.files.key }}"
{{- else if ne .Values.tls.mode "none" }}
- "--tls-cert={{ .Values.tls.mountPath }}/tls.crt"
- "--tls-key={{ .Values.tls.mountPath }}/tls.key"
{{- end }}
{{- with include "cig.clientCaPath" . }}
- "--tls-client-ca={{ . }}"
{{- end }}
{{- with .Values.callerIdentity.header }}
- "--caller-identity-header={{ . }}"
{{- $peers := $.Values.callerIdentity.trustedPeers }}
{{- if $.Values.callerIdentity.trustPodIPs }}
{{- $peers = append $peers "$(POD_IPS)" }}
{{- end }}
- "--caller-identity-header-trusted-peers={{ join "," $peers }}"
{{- end }}
{{- if .Values.audit.enabled }}
- "--audit-log=-"
- "--audit-hmac-key-file={{ .Values.audit.mountPath }}/{{ .Values.audit.hmacKeySecret.key }}"
- "--audit-queue-capacity={{ .Values.audit.queueCapacity }}"
- "--audit-fallback-after={{ .Values.audit.fallbackAfter }}"
{{- end }}
{{- range .Values.gateway.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* The gateway container's mounts; each a directory, never a subPath. */}}
{{- define "cig.volumeMounts" -}}
{{- if .Values.policy.enabled }}
- name: policy
  mountPath: {{ .Values.policy.mountPath }}
  readOnly: true
{{- end }}
{{- if or (eq .Values.tls.mode "secret") (eq .Values.tls.mode "certManager") }}
- name: tls
  mountPath: {{ .Values.tls.mountPath }}
  readOnly: true
{{- if and .Values.tls.clientAuth .Values.tls.clientCa.existingConfigMap }}
- name: client-ca
  mountPath: {{ .Values.tls.clientCa.mountPath }}
  readOnly: true
{{- end }}
{{- end }}
{{- if .Values.audit.enabled }}
- name: audit-key
  mountPath: {{ .Values.audit.mountPath }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The pod's volumes. */}}
{{- define "cig.volumes" -}}
{{- if .Values.policy.enabled }}
- name: policy
  configMap:
    name: {{ include "cig.policyConfigMapName" . }}
    items:
      - key: {{ .Values.policy.fileName }}
        path: {{ .Values.policy.fileName }}
{{- end }}
{{- if or (eq .Values.tls.mode "secret") (eq .Values.tls.mode "certManager") }}
- name: tls
  secret:
    secretName: {{ include "cig.tlsSecretName" . }}
    # Read by the group 65532 (fsGroup), by no one else.
    defaultMode: 0440
{{- if and .Values.tls.clientAuth .Values.tls.clientCa.existingConfigMap }}
- name: client-ca
  configMap:
    name: {{ .Values.tls.clientCa.existingConfigMap }}
    items:
      - key: {{ .Values.tls.clientCa.key }}
        path: {{ .Values.tls.clientCa.key }}
{{- end }}
{{- end }}
{{- if .Values.audit.enabled }}
- name: audit-key
  secret:
    secretName: {{ .Values.audit.hmacKeySecret.name }}
    defaultMode: 0440
    items:
      - key: {{ .Values.audit.hmacKeySecret.key }}
        path: {{ .Values.audit.hmacKeySecret.key }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
