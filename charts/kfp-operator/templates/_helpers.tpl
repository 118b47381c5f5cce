{{/* The release's full name, shortened to the 63 characters a name may have. */}}
{{- define "kfp-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kfp-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kfp-operator.labels" -}}
{{ include "kfp-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kfp-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kfp-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Cluster-scoped objects carry the namespace too, so two releases of one name do not clash. */}}
{{- define "kfp-operator.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "kfp-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
