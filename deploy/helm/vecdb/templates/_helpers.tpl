{{/* Names and labels. */}}
{{- define "vecdb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vecdb.fullname" -}}
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

{{/* The labels every object carries; objects of a role or a backend add its selector, the others "vecdb.labels". */}}
{{- define "vecdb.chartLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: vecdb
{{- end }}

{{- define "vecdb.labels" -}}
{{ include "vecdb.chartLabels" . }}
app.kubernetes.io/name: {{ include "vecdb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The selector of one vecdb role's pods: (dict "root" $ "role" "coord") */}}
{{- define "vecdb.roleSelector" -}}
app.kubernetes.io/name: {{ include "vecdb.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{/* The selector of a bundled backend's pod: (dict "root" $ "backend" "etcd") */}}
{{- define "vecdb.backendSelector" -}}
app.kubernetes.io/name: {{ include "vecdb.name" .root }}-{{ .backend }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .backend }}
{{- end }}

{{- define "vecdb.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The backends as vecdb names them (vecdb/config.py): bundled ones are this release's Services. */}}
{{- define "vecdb.logStore" -}}
{{- if .Values.nats.bundled }}nats://{{ include "vecdb.fullname" . }}-nats:4222{{ else }}{{ required "nats.url is required when nats.bundled is false" .Values.nats.url }}{{ end }}
{{- end }}

{{- define "vecdb.metaStore" -}}
{{- if .Values.etcd.bundled }}etcd://{{ include "vecdb.fullname" . }}-etcd:2379{{ else }}etcd://{{ required "etcd.endpoint is required when etcd.bundled is false" .Values.etcd.endpoint }}{{ end }}
{{- end }}

{{- define "vecdb.objectStore" -}}
s3://{{ .Values.s3.bucket }}{{ with .Values.s3.prefix }}/{{ . }}{{ end }}
{{- end }}

{{- define "vecdb.s3Endpoint" -}}
{{- if .Values.s3.bundled }}http://{{ include "vecdb.fullname" . }}-minio:9000{{ else }}{{ .Values.s3.endpoint }}{{ end }}
{{- end }}

{{/* The Secret with accessKey/secretKey; empty when there is none (external S3, boto3's own chain). */}}
{{- define "vecdb.s3Secret" -}}
{{- if .Values.s3.existingSecret }}{{ .Values.s3.existingSecret }}
{{- else if or .Values.s3.bundled .Values.s3.accessKey }}{{ include "vecdb.fullname" . }}-s3
{{- end }}
{{- end }}

{{/* The Secret with the key clusterSecret: the roles' shared secret for internal RPC. */}}
{{- define "vecdb.clusterSecret" -}}
{{- .Values.clusterSecret.existingSecret | default (printf "%s-cluster" (include "vecdb.fullname" .)) }}
{{- end }}

{{/* The settings file: .Values.config plus the backends. */}}
{{- define "vecdb.settings" -}}
{{- $storage := dict "log" (include "vecdb.logStore" .) "meta" (include "vecdb.metaStore" .) "objects" (include "vecdb.objectStore" .) "s3_endpoint" (include "vecdb.s3Endpoint" .) "s3_region" .Values.s3.region "data_dir" "/var/lib/vecdb" }}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.config) (dict "storage" $storage)) }}
{{- end }}
