{{/* The base name of every object: the release name, or
     <release>-evbridge when the release name does not contain "evbridge". */}}
{{- define "evbridge.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The pod selector. It names no release: one evbridge release per
     namespace, and the same selector as deploy/k8s (a Deployment's
     selector cannot change after creation). */}}
{{- define "evbridge.selectorLabels" -}}
app.kubernetes.io/name: evbridge
app.kubernetes.io/component: bridge
{{- end -}}

{{- define "evbridge.podLabels" -}}
{{ include "evbridge.selectorLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "evbridge.labels" -}}
{{ include "evbridge.podLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels of the Strimzi resources: the cluster they belong to, and the
     component "state" for the topics. */}}
{{- define "evbridge.strimziLabels" -}}
strimzi.io/cluster: {{ .Values.kafka.strimzi.cluster }}
app.kubernetes.io/name: evbridge
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "evbridge.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "evbridge.shards" -}}
{{- dig "scale" "shards" 0 .Values.config | int -}}
{{- end -}}

{{/* The container port: the port of config.http.listen (default 8080). */}}
{{- define "evbridge.port" -}}
{{- $listen := dig "http" "listen" "0.0.0.0:8080" .Values.config | toString -}}
{{- splitList ":" $listen | last | int -}}
{{- end -}}

{{- define "evbridge.sasl" -}}
{{- if has .Values.kafka.securityProtocol (list "SASL_PLAINTEXT" "SASL_SSL") }}true{{ end -}}
{{- end -}}

{{- define "evbridge.tls" -}}
{{- if has .Values.kafka.securityProtocol (list "SSL" "SASL_SSL") }}true{{ end -}}
{{- end -}}

{{/* The Secret with the client certificate for mutual TLS, if any. */}}
{{- define "evbridge.clientCertSecret" -}}
{{- $k := .Values.kafka -}}
{{- if and (eq $k.securityProtocol "SSL") $k.strimzi.user.create (eq $k.strimzi.user.authentication "tls") -}}
{{ $k.sasl.username }}
{{- else if and (eq $k.securityProtocol "SSL") $k.clientCert.secretName -}}
{{ $k.clientCert.secretName }}
{{- end -}}
{{- end -}}

{{/* evbridge.json: .Values.config with the Kafka connection of .Values.kafka. */}}
{{- define "evbridge.config" -}}
{{- $k := .Values.kafka -}}
{{- $cfg := deepCopy .Values.config -}}
{{- $props := dict "security.protocol" $k.securityProtocol -}}
{{- if include "evbridge.sasl" . -}}
{{- $_ := set $props "sasl.mechanism" $k.sasl.mechanism -}}
{{- $_ := set $props "sasl.username" $k.sasl.username -}}
{{- $_ := set $props "sasl.password" "${file:/var/run/secrets/evbridge/kafka/password}" -}}
{{- end -}}
{{- if and (include "evbridge.tls" .) $k.ca.secretName -}}
{{- $_ := set $props "ssl.ca.location" "/var/run/secrets/evbridge/kafka-ca/ca.crt" -}}
{{- end -}}
{{- if include "evbridge.clientCertSecret" . -}}
{{- $_ := set $props "ssl.certificate.location" "/var/run/secrets/evbridge/kafka-tls/user.crt" -}}
{{- $_ := set $props "ssl.key.location" "/var/run/secrets/evbridge/kafka-tls/user.key" -}}
{{- end -}}
{{- $kafka := deepCopy (get $cfg "kafka" | default dict) -}}
{{- $_ := set $kafka "brokers" $k.bootstrapServers -}}
{{- $_ := set $kafka "properties" (mustMergeOverwrite (deepCopy (get $kafka "properties" | default dict)) $props) -}}
{{- $_ := set $cfg "kafka" $kafka -}}
{{- toPrettyJson $cfg -}}
{{- end -}}

{{/* Settings the schema cannot express. */}}
{{- define "evbridge.validate" -}}
{{- $shards := include "evbridge.shards" . | int -}}
{{- $replicas := .Values.replicaCount | int -}}
{{- if and (eq $shards 0) (gt $replicas 1) -}}
{{- fail (printf "replicaCount %d needs config.scale.shards: without shards evbridge runs one active instance (docs/scaling.md)" $replicas) -}}
{{- end -}}
{{- if and (gt $shards 0) (gt $replicas $shards) -}}
{{- fail (printf "replicaCount %d exceeds config.scale.shards %d: the extra pods would own nothing" $replicas $shards) -}}
{{- end -}}
{{- if and (include "evbridge.sasl" .) (not .Values.kafka.sasl.passwordSecret.name) -}}
{{- fail "kafka.sasl.passwordSecret.name is required with a SASL securityProtocol" -}}
{{- end -}}
{{- if and .Values.kafka.strimzi.user.create (eq .Values.kafka.strimzi.user.authentication "tls") (ne .Values.kafka.securityProtocol "SSL") -}}
{{- fail "kafka.strimzi.user.authentication tls needs kafka.securityProtocol SSL" -}}
{{- end -}}
{{- if and .Values.kafka.strimzi.user.create (eq .Values.kafka.strimzi.user.authentication "scram-sha-512") (not (include "evbridge.sasl" .)) -}}
{{- fail "kafka.strimzi.user.authentication scram-sha-512 needs a SASL kafka.securityProtocol" -}}
{{- end -}}
{{- end -}}
