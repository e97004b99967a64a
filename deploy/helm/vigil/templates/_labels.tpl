{{- define "vigil.labels" -}}
app.kubernetes.io/part-of: vigil
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
