{{- define "taskqueue.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "taskqueue.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "taskqueue.labels" -}}
app.kubernetes.io/name: {{ include "taskqueue.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "taskqueue.selector" -}}
app.kubernetes.io/name: {{ include "taskqueue.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "taskqueue.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "taskqueue.adminSecret" -}}
{{- .Values.adminApiKey.existingSecret | default (printf "%s-admin-api-key" (include "taskqueue.fullname" .)) -}}
{{- end -}}

{{- define "taskqueue.databaseSecret" -}}
{{- if .Values.postgresql.external.existingSecret -}}
{{- .Values.postgresql.external.existingSecret -}}
{{- else -}}
{{- printf "%s-database" (include "taskqueue.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "taskqueue.databaseSecretKey" -}}
{{- if .Values.postgresql.external.existingSecret -}}
{{- .Values.postgresql.external.secretKey -}}
{{- else -}}
database-url
{{- end -}}
{{- end -}}

{{- define "taskqueue.serviceAccount" -}}
{{- printf "%s-%s" (include "taskqueue.fullname" .root) .component -}}
{{- end -}}

{{/* Broker URLs WorkerPools may name: the values, or this release's broker Service. */}}
{{- define "taskqueue.allowedBrokerUrls" -}}
{{- if .Values.operator.allowedBrokerUrls -}}
{{- join "," .Values.operator.allowedBrokerUrls -}}
{{- else -}}
{{- $svc := printf "%s-broker" (include "taskqueue.fullname" .) -}}
{{- $s := ternary "https" "http" (ne .Values.tls.existingSecret "") -}}
{{- $p := .Values.service.httpPort -}}
{{- printf "%s://%s:%v,%s://%s.%s.svc:%v,%s://%s.%s.svc.cluster.local:%v" $s $svc $p $s $svc .Release.Namespace $p $s $svc .Release.Namespace $p -}}
{{- end -}}
{{- end -}}
