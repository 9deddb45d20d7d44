{{/* The chart's name, at most 63 characters. */}}
{{- define "clearance.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: release-chart unless the release name already holds the chart's. */}}
{{- define "clearance.fullname" -}}
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

{{- define "clearance.selectorLabels" -}}
app.kubernetes.io/name: {{ include "clearance.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "clearance.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "clearance.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: server
{{- end }}

{{- define "clearance.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "clearance.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "clearance.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* clearance.secretEnv renders one env entry read from a Secret: (list NAME SECRETREF OPTIONAL). */}}
{{- define "clearance.secretEnv" -}}
{{- $name := index . 0 }}{{ $ref := index . 1 }}{{ $optional := index . 2 -}}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.existingSecret | quote }}
      key: {{ $ref.key | quote }}
      {{- if $optional }}
      optional: true
      {{- end }}
{{- end }}

{{/* clearance.validate fails the render on combinations the server would refuse at start. */}}
{{- define "clearance.validate" -}}
{{- $v := .Values }}
{{- if not $v.publicURL }}{{ fail "publicURL is required: the external base URL of the service (the audience of its tokens)" }}{{ end }}
{{- if not $v.database.existingSecret }}{{ fail "database.existingSecret is required: the Secret holding the PostgreSQL URL (replicas share one database)" }}{{ end }}
{{- if eq $v.engine.kind "openfga" }}
{{- if not $v.engine.openfga.url }}{{ fail "engine.kind openfga needs engine.openfga.url" }}{{ end }}
{{- if and $v.engine.openfga.writeModel $v.engine.openfga.modelID }}{{ fail "engine.openfga.writeModel and engine.openfga.modelID exclude each other: a pinned model is never replaced" }}{{ end }}
{{- else if or $v.engine.openfga.url $v.engine.openfga.storeID $v.engine.openfga.modelID $v.engine.openfga.token.existingSecret }}
{{- fail "engine.openfga.* needs engine.kind openfga" }}
{{- end }}
{{- if and $v.database.readReplica.existingSecret (ne $v.store.kind "pgvector") }}{{ fail "database.readReplica serves pgvector's searches: it needs store.kind pgvector" }}{{ end }}
{{- if and (eq $v.store.kind "qdrant") (not $v.store.qdrant.url) }}{{ fail "store.kind qdrant needs store.qdrant.url" }}{{ end }}
{{- if and (ne $v.store.kind "qdrant") (or $v.store.qdrant.url $v.store.qdrant.apiKey.existingSecret) }}{{ fail "store.qdrant.* needs store.kind qdrant" }}{{ end }}
{{- if and (eq $v.embedder.kind "openai") (or (not $v.embedder.openai.url) (not $v.embedder.openai.model)) }}{{ fail "embedder.kind openai needs embedder.openai.url and embedder.openai.model" }}{{ end }}
{{- if and $v.audit.retention (not $v.audit.checkpointKey.existingSecret) }}{{ fail "audit.retention needs audit.checkpointKey.existingSecret: every replica must sign retention checkpoints with the same key" }}{{ end }}
{{- end }}
